package bolt

// Commits is how many group commits the store has run.
func (s *Store) Commits() uint64 { return s.commits.Load() }
