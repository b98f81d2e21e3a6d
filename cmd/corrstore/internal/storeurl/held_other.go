//go:build !unix

package storeurl

// held cannot tell without waiting here; the open's lock timeout decides.
func held(string) bool { return false }
