go test fuzz v1
[]byte("pipeline \"x\" {\n  time\x00out = \"5m\"\n  stage \"discover\" {}\n}\n")
