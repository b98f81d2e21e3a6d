//go:build race

package redisstore_test

// raceOn is set in a build with -race.
const raceOn = true
