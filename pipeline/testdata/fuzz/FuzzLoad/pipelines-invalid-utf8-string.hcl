go test fuzz v1
[]byte("pipeline \"x\" {\n  stage \"discover\" { name_prefix = \"caf\xe9\xff\" }\n}\n")
