package bolt

// Commits is how many group commits the store has run.
func (s *Store) Commits() uint64 { return s.commits.Load() }

// OnListLoad makes List call f with the ref of each record it reads.
func (s *Store) OnListLoad(f func(ref string)) { s.listLoad = f }
