go test fuzz v1
[]byte("pipeline \"x\" {\n  timeout = \"${[1, 2]}\"\n  stage \"discover\" {}\n}\n")
