//go:build !race

package redistest_test

// raceOn is set in a build with -race.
const raceOn = false
