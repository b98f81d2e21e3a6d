package client

// Alarm is what a waiter sets for the stored deadline, for tests that fake it.
type Alarm = alarm

// SetAlarms makes the waiters of c use the alarms newAlarm makes: a test
// drives them with its fake clock.
func SetAlarms(c *Client, newAlarm func() Alarm) { c.newAlarm = newAlarm }
