go test fuzz v1
[]byte("pipeline \"p\" {\n  stage \"discover\" {\n    name_prefix = var.prefix # ERROR: Unsupported attribute\n  }\n}\n")
