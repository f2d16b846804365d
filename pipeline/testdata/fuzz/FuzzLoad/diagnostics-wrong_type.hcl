go test fuzz v1
[]byte("pipeline \"p\" {\n  stage \"discover\" {\n    workers = \"many\" # ERROR: Unsuitable value type\n  }\n}\n")
