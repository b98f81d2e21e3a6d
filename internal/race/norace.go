//go:build !race

// Package race says whether the program was built with the race detector,
// so that tests can size themselves: under -race a test runs 5–20 times
// slower, and some are sized down or left to a run without it.
package race

// Enabled is true in a build with -race.
const Enabled = false
