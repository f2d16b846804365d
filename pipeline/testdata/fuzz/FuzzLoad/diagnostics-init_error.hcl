go test fuzz v1
[]byte("pipeline \"p\" {\n  stage \"discover\" {\n    workers = 0 # ERROR: Invalid discover stage\n  }\n}\n")
