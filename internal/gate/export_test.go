package gate

// OneLane leaves g one lane, so that every request of a test shares it.
func OneLane(g *Gate) { g.lanes = g.lanes[:1] }

// Queued is how many requests wait for their turn on g's lanes.
func Queued(g *Gate) int {
	n := 0
	for _, l := range g.lanes {
		l.mu.Lock()
		n += len(l.queue)
		l.mu.Unlock()
	}
	return n
}

// Batches is how many batches g's lanes ended.
func Batches(g *Gate) int64 {
	var n int64
	for _, l := range g.lanes {
		n += l.commits.Load()
	}
	return n
}

// ReadWrites is how many times g's lanes wrote reads' events.
func ReadWrites(g *Gate) int64 {
	var n int64
	for _, l := range g.lanes {
		n += l.readWrites.Load()
	}
	return n
}
