//go:build !unix

package mysql

type replyWait struct {
	rc interface {
		Read(func(uintptr) bool) error
	}
	step  func(uintptr) bool
	stage int
}

// replyWaiter: off Unix, FlushRequest is Flush.
func (p *PacketIO) replyWaiter() *replyWait { return nil }
