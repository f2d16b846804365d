go test fuzz v1
[]byte("pipeline \"p\" {\n  stage \"discover\" {\n    name_prefix \"x\" # ERROR: Invalid block definition\n  }\n}\n")
