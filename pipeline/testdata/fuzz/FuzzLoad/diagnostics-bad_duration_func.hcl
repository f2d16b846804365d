go test fuzz v1
[]byte("pipeline \"p\" {\n  timeout = duration(\"ten minutes\") # ERROR: Invalid function argument\n  stage \"discover\" {}\n}\n")
