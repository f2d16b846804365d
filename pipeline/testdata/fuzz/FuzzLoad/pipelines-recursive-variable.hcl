go test fuzz v1
[]byte("variable \"a\" { default = var.b }\nvariable \"b\" { default = var.a }\npipeline \"x\" {\n  stage \"discover\" { name_prefix = var.a }\n}\n")
