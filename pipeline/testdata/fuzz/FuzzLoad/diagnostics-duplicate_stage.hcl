go test fuzz v1
[]byte("pipeline \"p\" {\n  stage \"discover\" {}\n  stage \"discover\" {} # ERROR: Duplicate stage\n}\n")
