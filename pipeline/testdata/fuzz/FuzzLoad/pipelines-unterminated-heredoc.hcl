go test fuzz v1
[]byte("pipeline \"x\" {\n  description = <<EOT\nnever ends\n  stage \"discover\" {}\n}\n")
