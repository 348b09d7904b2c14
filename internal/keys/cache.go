package keys

import (
	"bytes"
	"container/list"
	"sync"
	"time"
)

// keyCache holds unwrapped data keys in memory for a limited time, the
// least recently used leaving first when it is full. An entry is found only
// together with the wrapped bytes it was unwrapped from, so a key version
// that was never committed (its transaction rolled back and another node
// stored the same id and version) is never served.
type keyCache struct {
	mu      sync.Mutex
	size    int
	ttl     time.Duration
	now     func() time.Time
	order   *list.List // of *cacheEntry, most recently used first
	entries map[cacheKey]*list.Element
}

type cacheKey struct {
	id      KeyID
	version uint32
}

type cacheEntry struct {
	key     cacheKey
	dk      DataKey
	wrapped []byte
	expires time.Time
}

func newKeyCache(size int, ttl time.Duration) *keyCache {
	return &keyCache{size: size, ttl: ttl, now: time.Now, order: list.New(), entries: make(map[cacheKey]*list.Element)}
}

func (c *keyCache) get(id KeyID, version uint32, wrapped []byte) (DataKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[cacheKey{id, version}]
	if !ok {
		return DataKey{}, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) || !bytes.Equal(e.wrapped, wrapped) {
		c.remove(el)
		return DataKey{}, false
	}
	c.order.MoveToFront(el)
	return e.dk, true
}

func (c *keyCache) put(dk DataKey, wrapped []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := cacheKey{dk.ID, dk.Version}
	if el, ok := c.entries[k]; ok {
		c.remove(el)
	}
	e := &cacheEntry{key: k, dk: dk, wrapped: bytes.Clone(wrapped), expires: c.now().Add(c.ttl)}
	c.entries[k] = c.order.PushFront(e)
	for c.order.Len() > c.size {
		c.remove(c.order.Back())
	}
}

// evict drops every version of key id.
func (c *keyCache) evict(id KeyID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, el := range c.entries {
		if k.id == id {
			c.remove(el)
		}
	}
}

func (c *keyCache) remove(el *list.Element) {
	e := c.order.Remove(el).(*cacheEntry)
	delete(c.entries, e.key)
}

func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
