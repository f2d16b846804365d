go test fuzz v1
[]byte("pipeline \"p\" {\n  stage \"discovr\" {} # ERROR: Unknown stage kind\n}\n")
