package client_test

func runChild() bool { return false }
