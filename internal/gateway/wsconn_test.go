package gateway

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// byteConn is a net.Conn that reads a fixed server stream, in chunks of
// at most chunk bytes, and records what the client writes.
type byteConn struct {
	r     *bytes.Reader
	chunk int
	out   bytes.Buffer
}

func (c *byteConn) Read(p []byte) (int, error) {
	if c.chunk > 0 && len(p) > c.chunk {
		p = p[:c.chunk]
	}
	return c.r.Read(p)
}
func (c *byteConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *byteConn) Close() error                     { return nil }
func (c *byteConn) LocalAddr() net.Addr              { return nil }
func (c *byteConn) RemoteAddr() net.Addr             { return nil }
func (c *byteConn) SetDeadline(time.Time) error      { return nil }
func (c *byteConn) SetReadDeadline(time.Time) error  { return nil }
func (c *byteConn) SetWriteDeadline(time.Time) error { return nil }
func newByteConn(stream []byte, chunk int) *byteConn {
	return &byteConn{r: bytes.NewReader(stream), chunk: chunk}
}
func testWS(nc net.Conn) *wsConn { return &wsConn{nc: nc, maxSize: 1 << 20, pool: &bigReadPool} }
func frame(fin bool, op byte, p []byte) []byte {
	b := []byte{op}
	if fin {
		b[0] |= 0x80
	}
	switch n := len(p); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, p...)
}

func TestWSReadMessages(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 200_000)
	var stream []byte
	stream = append(stream, frame(true, wsText, []byte(`{"op":10}`))...)
	stream = append(stream, frame(false, wsBinary, []byte("ab"))...)
	stream = append(stream, frame(true, wsPing, []byte("p"))...) // between fragments
	stream = append(stream, frame(true, wsCont, []byte("cd"))...)
	stream = append(stream, frame(true, wsText, big)...)
	stream = append(stream, frame(true, wsClose, append([]byte{0x0f, 0xa0}, "Authentication failed."...))...)
	for _, chunk := range []int{0, 1, 7, 512, 4096} {
		nc := newByteConn(stream, chunk)
		c := testWS(nc)
		type msg struct {
			bin bool
			p   string
		}
		var got []msg
		for {
			bin, p, err := c.readMessage(nil)
			if err != nil {
				var ce *discord.CloseError
				if !errors.As(err, &ce) || ce.Code != 4000 || ce.Reason != "Authentication failed." {
					t.Fatalf("chunk %d: end = %v, want close 4000 with its reason", chunk, err)
				}
				break
			}
			got = append(got, msg{bin, string(p)})
		}
		want := []msg{{false, `{"op":10}`}, {true, "abcd"}, {false, string(big)}}
		if len(got) != len(want) {
			t.Fatalf("chunk %d: %d messages, want %d", chunk, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("chunk %d: message %d differs (%v, %d bytes)", chunk, i, got[i].bin, len(got[i].p))
			}
		}
		// The client answered the ping with a masked pong and echoed the
		// close, and holds no read buffer afterwards.
		out := nc.out.Bytes()
		if len(out) < 2 || out[0] != 0x80|wsPong || out[1]&0x80 == 0 {
			t.Errorf("chunk %d: first frame written % x, want a masked pong", chunk, out[:min(len(out), 8)])
		}
		if !bytes.Contains(out, []byte{0x80 | wsClose}) {
			t.Errorf("chunk %d: no close frame echoed", chunk)
		}
		if c.big != nil {
			t.Errorf("chunk %d: a drained connection still holds its big buffer", chunk)
		}
	}
}

func TestWSProtocolErrors(t *testing.T) {
	for name, stream := range map[string][]byte{
		"masked server frame":             {0x81, 0x81, 1, 2, 3, 4, 'x'},
		"reserved bit":                    {0xc1, 0x01, 'x'},
		"continuation first":              frame(true, wsCont, []byte("x")),
		"long control frame":              frame(true, wsPing, bytes.Repeat([]byte("x"), 126)),
		"fragmented control":              frame(false, wsPing, []byte("x")),
		"new message in a fragmented one": append(frame(false, wsText, []byte("a")), frame(true, wsText, []byte("b"))...),
		"too large":                       frame(true, wsText, make([]byte, 2<<20)),
		"truncated":                       frame(true, wsText, []byte("abc"))[:4],
	} {
		c := testWS(newByteConn(stream, 0))
		_, _, err := c.readMessage(nil)
		if err == nil {
			t.Errorf("%s: no error", name)
		}
		if name == "truncated" && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Errorf("truncated: %v, want EOF", err)
		}
	}
}

// FuzzWSRead feeds arbitrary server streams to the frame reader: it must
// never panic or loop, and a message it returns is at most maxSize bytes.
func FuzzWSRead(f *testing.F) {
	f.Add(frame(true, wsText, []byte(`{"op":10}`)), 0)
	f.Add(append(frame(false, wsBinary, []byte("ab")), frame(true, wsCont, []byte("cd"))...), 3)
	f.Add(frame(true, wsClose, []byte{0x03, 0xe8}), 1)
	f.Fuzz(func(t *testing.T, stream []byte, chunk int) {
		c := testWS(newByteConn(stream, chunk&0xfff))
		c.maxSize = 1 << 16
		for range 64 {
			_, p, err := c.readMessage(nil)
			if err != nil {
				return
			}
			if len(p) > c.maxSize {
				t.Fatalf("message of %d bytes, max %d", len(p), c.maxSize)
			}
		}
	})
}

// TestWSIdle checks idle detection on a connection with real deadlines
// (net.Pipe, in a synctest bubble): onIdle runs once per quiet spell, not
// while messages keep coming, and the closing handshake's deadline wins
// over the idle one.
func TestWSIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cli, srv := net.Pipe()
		defer srv.Close()
		go io.Copy(io.Discard, srv) // the client's frames (close)
		c := testWS(cli)
		defer c.closeNow()
		var idles, wakes atomic.Int32
		c.watchIdle(100*time.Millisecond, func(asleep bool) {
			if asleep {
				idles.Add(1)
			} else {
				wakes.Add(1)
			}
		})

		type result struct {
			p   string
			err error
			at  time.Duration
		}
		start := time.Now()
		results := make(chan result, 1)
		go func() {
			for {
				_, p, err := c.readMessage(nil)
				results <- result{string(p), err, time.Since(start)}
				if err != nil {
					return
				}
			}
		}()
		send := func(p string) {
			t.Helper()
			if _, err := srv.Write(frame(true, wsText, []byte(p))); err != nil {
				t.Fatal(err)
			}
			if r := <-results; r.p != p || r.err != nil {
				t.Fatalf("read %q, %v; want %q", r.p, r.err, p)
			}
		}
		// A message every 60ms: never quiet for 100ms.
		for i := range 10 {
			send(fmt.Sprint("busy ", i))
			time.Sleep(60 * time.Millisecond)
		}
		if idles.Load() != 0 {
			t.Fatalf("onIdle ran %d times on a busy connection", idles.Load())
		}
		// Quiet: onIdle runs once within 2×100ms, then not again.
		time.Sleep(time.Second)
		synctest.Wait()
		if idles.Load() != 1 {
			t.Fatalf("after a quiet second onIdle ran %d times, want 1", idles.Load())
		}
		// A message wakes it; the next quiet spell runs onIdle again.
		send("wake")
		if wakes.Load() != 1 {
			t.Fatalf("onIdle(false) ran %d times after the first message of a quiet connection, want 1", wakes.Load())
		}
		time.Sleep(50 * time.Millisecond)
		synctest.Wait()
		if idles.Load() != 1 {
			t.Fatalf("50ms after waking onIdle ran %d times, want still 1", idles.Load())
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if idles.Load() != 2 {
			t.Fatalf("150ms after waking onIdle ran %d times, want 2", idles.Load())
		}
		// Closing: the idle deadline must not end the handshake early, nor
		// clear its 5s deadline.
		send("before close")
		closed := time.Now()
		c.closeWith(4000)
		r := <-results
		if !errors.Is(r.err, os.ErrDeadlineExceeded) {
			t.Fatalf("read during a close nobody answers = %q, %v; want the deadline", r.p, r.err)
		}
		if waited := time.Since(closed); waited != 5*time.Second {
			t.Fatalf("the closing handshake ended after %v, want 5s", waited)
		}
	})
}

// TestWSIdleTLS checks that an idle read deadline leaves a TLS connection
// usable: crypto/tls keeps what it read of a record and reads on after a
// timeout. Real loopback TCP, so the timing is loose.
func TestWSIdleTLS(t *testing.T) {
	hs := httptest.NewUnstartedServer(nil)
	hs.StartTLS()
	certs := hs.TLS.Certificates
	hs.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: certs})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvDone := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvDone <- err
			return
		}
		defer c.Close()
		for _, p := range []string{"one", "two", "three"} {
			if _, err := c.Write(frame(true, wsText, []byte(p))); err != nil {
				srvDone <- err
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		_, err = c.Write(frame(true, wsClose, []byte{0x03, 0xe8}))
		srvDone <- err
		_, _ = io.Copy(io.Discard, c)
	}()
	nc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	c := testWS(nc)
	defer c.closeNow()
	var idles atomic.Int32
	c.watchIdle(30*time.Millisecond, func(asleep bool) {
		if asleep {
			idles.Add(1)
		}
	})
	var got []string
	for {
		_, p, err := c.readMessage(nil)
		if err != nil {
			var ce *discord.CloseError
			if !errors.As(err, &ce) || ce.Code != 1000 {
				t.Fatalf("after %q: %v, want the server's close 1000", got, err)
			}
			break
		}
		got = append(got, string(p))
	}
	if fmt.Sprint(got) != "[one two three]" {
		t.Errorf("read %q, want one, two, three", got)
	}
	if n := idles.Load(); n < 2 {
		t.Errorf("onIdle ran %d times across two 200ms pauses, want 2 or more", n)
	}
	if err := <-srvDone; err != nil {
		t.Fatal(err)
	}
}
