package dispatcher

import (
	"slices"
)

// mark is how far one subscription has got through one stream, as a
// checkpoint stores it: every event it was routed below Floor is finished,
// and so are those listed in Done (finished out of order above Floor).
type mark struct {
	Floor uint64   `json:"floor"`
	Done  []uint64 `json:"done,omitempty"`
}

// needs says whether the event at seq, routed to the subscription, is not
// finished yet.
func (m mark) needs(seq uint64) bool {
	if seq < m.Floor {
		return false
	}
	_, found := slices.BinarySearch(m.Done, seq)
	return !found
}

// progress tracks the events of one stream routed to one subscription:
// which are pending (routed, not finished) and which were finished above
// the lowest pending one. It is not safe
// for concurrent use.
type progress struct {
	// order holds the pending sequences in the order they were added,
	// with finished ones still in it until they reach the front.
	order    []uint64
	finished map[uint64]bool
	pending  int
}

// insert adds seq as pending; sequences usually come in order, but a
// catch-up read adds older ones.
func (p *progress) insert(seq uint64) {
	if n := len(p.order); n == 0 || p.order[n-1] < seq {
		p.order = append(p.order, seq)
	} else {
		i, found := slices.BinarySearch(p.order, seq)
		if found {
			return
		}
		p.order = slices.Insert(p.order, i, seq)
	}
	p.pending++
}

// finish marks seq finished; a sequence not pending is ignored.
func (p *progress) finish(seq uint64) {
	if _, found := slices.BinarySearch(p.order, seq); !found || p.finished[seq] {
		return
	}
	if p.finished == nil {
		p.finished = map[uint64]bool{}
	}
	p.finished[seq] = true
	p.pending--
	// Drop the finished front, so the front is the lowest pending.
	i := 0
	for i < len(p.order) && p.finished[p.order[i]] {
		delete(p.finished, p.order[i])
		i++
	}
	if i > 0 {
		p.order = slices.Delete(p.order, 0, i)
		if len(p.order) == 0 {
			p.order = nil
		}
	}
}

// lowest is the lowest pending sequence, if one is.
func (p *progress) lowest() (uint64, bool) {
	if p.pending == 0 {
		return 0, false
	}
	return p.order[0], true
}

// count is how many sequences are pending.
func (p *progress) count() int { return p.pending }

// mark is the checkpoint of this progress, given that every event before
// pos has been routed.
func (p *progress) mark(pos uint64) mark {
	if len(p.order) == 0 {
		return mark{Floor: pos}
	}
	m := mark{Floor: p.order[0]}
	for _, s := range p.order {
		if p.finished[s] {
			m.Done = append(m.Done, s)
		}
	}
	return m
}
