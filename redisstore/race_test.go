//go:build redis && race

package redisstore_test

// raceOn is set in a build with -race.
const raceOn = true
