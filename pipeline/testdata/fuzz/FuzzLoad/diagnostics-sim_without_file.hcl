go test fuzz v1
[]byte("pipeline \"p\" {\n  gpu {\n    backend = \"sim\" # ERROR: Missing sim_file\n  }\n  stage \"discover\" {}\n}\n")
