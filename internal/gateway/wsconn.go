package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// wsConn is the client side of a WebSocket connection (RFC 6455), written
// for a gateway shard: an idle connection holds no buffer at all (a
// blocking read lands in a small inline array), and a busy one reads many
// frames per syscall into a pooled buffer that goes back to the pool as
// soon as it is drained. Reads happen on one goroutine; writes may come
// from any.
type wsConn struct {
	nc      net.Conn
	maxSize int // largest message accepted

	// Read side: unread bytes live in small or in *big.
	small  [512]byte
	big    *[]byte
	unread []byte
	pool   *sync.Pool
	flood  bool // the last read into big filled at least half of it: keep it

	// Idle detection, by the reading goroutine: a read deadline idleAfter
	// ahead, set when reading starts or resumes after a quiet spell; when it
	// passes with no read in between, onIdle runs once and the deadline is
	// cleared until data arrives again. Rearming only on timeouts keeps it
	// off the per-read path.
	idleAfter  time.Duration
	onIdle     func(asleep bool)
	reads      uint64 // reads that returned data
	readsArmed uint64 // reads when the deadline was set
	asleep     bool   // onIdle ran; no deadline set
	closing    atomic.Bool
	closeAt    atomic.Int64 // unix ns: the read deadline of the closing handshake

	wmu       sync.Mutex
	wbuf      []byte
	closeSent bool // guarded by wmu
}

// Opcodes of RFC 6455.
const (
	wsCont   = 0x0
	wsText   = 0x1
	wsBinary = 0x2
	wsClose  = 0x8
	wsPing   = 0x9
	wsPong   = 0xA
)

// errWSProtocol is a frame that breaks RFC 6455.
var errWSProtocol = errors.New("gateway: websocket protocol error")

const bigReadSize = 64 << 10

var bigReadPool = sync.Pool{New: func() any { b := make([]byte, bigReadSize); return &b }}

// dialWS opens a WebSocket connection to rawURL (ws or wss).
func dialWS(ctx context.Context, rawURL string, maxSize int) (*wsConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "wss" {
			host += ":443"
		} else {
			host += ":80"
		}
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "wss" {
		tc := tls.Client(nc, &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	c := &wsConn{nc: nc, maxSize: maxSize, pool: &bigReadPool}
	if err := c.handshake(ctx, u); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func (c *wsConn) handshake(ctx context.Context, u *url.URL) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.nc.SetDeadline(dl)
		defer c.nc.SetDeadline(time.Time{})
	}
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	path := u.RequestURI()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\nUser-Agent: gatehouse\r\n\r\n"
	if _, err := io.WriteString(c.nc, req); err != nil {
		return err
	}
	br := bufio.NewReaderSize(c.nc, 1024)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return fmt.Errorf("gateway: websocket handshake: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("gateway: websocket handshake: %s", resp.Status)
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) ||
		!strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return fmt.Errorf("%w: bad handshake response", errWSProtocol)
	}
	// Frames the server sent right behind the response (HELLO) are in br.
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		c.keep(b)
	}
	return nil
}

// keep stores b as the start of the unread bytes.
func (c *wsConn) keep(b []byte) {
	if len(b) <= len(c.small) {
		c.unread = c.small[:copy(c.small[:], b)]
		return
	}
	c.takeBig()
	c.unread = (*c.big)[:copy(*c.big, b)]
}

func (c *wsConn) takeBig() {
	if c.big == nil {
		c.big = c.pool.Get().(*[]byte)
	}
}

func (c *wsConn) releaseBig() {
	if c.big != nil {
		c.pool.Put(c.big)
		c.big = nil
	}
}

// fill makes at least n bytes unread (n <= len(small)), reading more. With
// nothing unread it reads into the small inline array, so that a goroutine
// blocked on an idle connection holds no buffer; a read that fills it means
// more is waiting, and reading continues in a pooled big buffer until
// everything read has been consumed.
func (c *wsConn) fill(n int) error {
	for len(c.unread) < n {
		if c.big == nil && len(c.unread) == 0 {
			m, err := c.nc.Read(c.small[:])
			c.unread = c.small[:m]
			if m == len(c.small) {
				c.moveToBig()
				c.flood = true
			}
			if m > 0 {
				c.gotData()
			}
			if err != nil && len(c.unread) < n {
				if m == 0 && c.timedOut(err) {
					continue
				}
				return err
			}
			continue
		}
		c.moveToBig() // also moves what is unread to the buffer's start
		free := len(*c.big) - len(c.unread)
		m, err := c.nc.Read((*c.big)[len(c.unread):])
		c.unread = (*c.big)[:len(c.unread)+m]
		c.flood = m >= free/2
		if m > 0 {
			c.gotData()
		}
		if err != nil && len(c.unread) < n {
			if m == 0 && c.timedOut(err) {
				continue
			}
			return err
		}
	}
	return nil
}

// watchIdle makes the reading goroutine call onIdle(true) once the
// connection has been quiet for about d (between d and 2d), and
// onIdle(false) when data arrives after that. The reading goroutine calls
// it before reading.
func (c *wsConn) watchIdle(d time.Duration, onIdle func(asleep bool)) {
	if d <= 0 || onIdle == nil {
		return
	}
	c.idleAfter, c.onIdle = d, onIdle
	c.setReadDeadline(time.Now().Add(d))
}

func (c *wsConn) gotData() {
	c.reads++
	if c.asleep {
		c.asleep = false
		c.onIdle(false)
		c.readsArmed = c.reads
		c.setReadDeadline(time.Now().Add(c.idleAfter))
	}
}

// setReadDeadline sets the read deadline unless the closing handshake has
// set its own. closeWith stores closing before setting its deadline, so one
// of the two always sees the other.
func (c *wsConn) setReadDeadline(t time.Time) {
	_ = c.nc.SetReadDeadline(t)
	if c.closing.Load() {
		_ = c.nc.SetReadDeadline(time.Unix(0, c.closeAt.Load()))
	}
}

// timedOut handles a read that hit the deadline: it reports whether to
// read on (an idle deadline) or give up (the closing handshake's).
func (c *wsConn) timedOut(err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if c.closing.Load() {
		at := time.Unix(0, c.closeAt.Load())
		if time.Now().Before(at) {
			// The idle deadline passed just as closing began.
			_ = c.nc.SetReadDeadline(at)
			return true
		}
		return false
	}
	if c.onIdle == nil {
		return false
	}
	if c.reads != c.readsArmed {
		// Data came since the deadline was set: not idle yet.
		c.readsArmed = c.reads
		c.setReadDeadline(time.Now().Add(c.idleAfter))
		return true
	}
	if len(c.unread) == 0 {
		c.flood = false
		c.releaseBig()
	}
	c.onIdle(true)
	c.asleep = true
	c.setReadDeadline(time.Time{})
	return true
}

// moveToBig puts the unread bytes at the start of the big buffer.
func (c *wsConn) moveToBig() {
	c.takeBig()
	c.unread = (*c.big)[:copy(*c.big, c.unread)]
}

// consume drops n unread bytes. Once they are drained the big buffer goes
// back to the pool, unless the connection is in a flood (the last read
// filled half of it), where the next read will most likely not block.
func (c *wsConn) consume(n int) {
	c.unread = c.unread[n:]
	if len(c.unread) == 0 {
		c.unread = nil
		if !c.flood {
			c.releaseBig()
		}
	}
}

// readPayload appends n payload bytes to dst.
func (c *wsConn) readPayload(dst []byte, n int) ([]byte, error) {
	for n > 0 {
		if len(c.unread) == 0 {
			if n >= bigReadSize {
				// A large payload: read straight into dst.
				start := len(dst)
				dst = growTo(dst, start+n)
				if _, err := io.ReadFull(c.nc, dst[start:start+n]); err != nil {
					return dst[:start], err
				}
				return dst, nil
			}
			if err := c.fill(1); err != nil {
				return dst, err
			}
		}
		k := min(n, len(c.unread))
		dst = append(dst, c.unread[:k]...)
		c.consume(k)
		n -= k
	}
	return dst, nil
}

func growTo(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	nb := make([]byte, n, n+n/4)
	copy(nb, b)
	return nb
}

// readMessage reads the next data message, appending it to dst, and
// answers control frames on the way. It returns a *discord.CloseError when
// the server closed the connection.
func (c *wsConn) readMessage(dst []byte) (isBinary bool, msg []byte, err error) {
	start := len(dst)
	started := false
	for {
		if err := c.fill(2); err != nil {
			return false, dst[:start], err
		}
		h0, h1 := c.unread[0], c.unread[1]
		fin, op, masked := h0&0x80 != 0, h0&0x0f, h1&0x80 != 0
		if h0&0x70 != 0 || masked {
			return false, dst[:start], fmt.Errorf("%w: reserved bits or a masked server frame", errWSProtocol)
		}
		hl, n := 2, int64(h1&0x7f)
		switch n {
		case 126:
			hl = 4
		case 127:
			hl = 10
		}
		if err := c.fill(hl); err != nil {
			return false, dst[:start], err
		}
		switch hl {
		case 4:
			n = int64(binary.BigEndian.Uint16(c.unread[2:4]))
		case 10:
			u := binary.BigEndian.Uint64(c.unread[2:10])
			if u > 1<<62 {
				return false, dst[:start], fmt.Errorf("%w: frame length", errWSProtocol)
			}
			n = int64(u)
		}
		c.consume(hl)
		if op >= wsClose {
			if !fin || n > 125 {
				return false, dst[:start], fmt.Errorf("%w: bad control frame", errWSProtocol)
			}
			var ctl [125]byte
			p, err := c.readPayload(ctl[:0], int(n))
			if err != nil {
				return false, dst[:start], err
			}
			switch op {
			case wsPing:
				_ = c.writeFrame(wsPong, p, 5*time.Second)
			case wsClose:
				code := discord.CloseCode(1005)
				reason := ""
				if len(p) >= 2 {
					code = discord.CloseCode(binary.BigEndian.Uint16(p))
					reason = string(p[2:])
				}
				c.sendClose(int(code))
				return false, dst[:start], &discord.CloseError{Code: code, Reason: reason}
			case wsPong:
			default:
				return false, dst[:start], fmt.Errorf("%w: opcode %d", errWSProtocol, op)
			}
			continue
		}
		switch {
		case op == wsCont && !started, op != wsCont && started, op != wsCont && op != wsText && op != wsBinary:
			return false, dst[:start], fmt.Errorf("%w: opcode %d out of sequence", errWSProtocol, op)
		}
		if op != wsCont {
			started = true
			isBinary = op == wsBinary
		}
		if int64(len(dst)-start)+n > int64(c.maxSize) {
			return false, dst[:start], fmt.Errorf("gateway: message over %d bytes", c.maxSize)
		}
		if dst, err = c.readPayload(dst, int(n)); err != nil {
			return false, dst[:start], err
		}
		if fin {
			return isBinary, dst, nil
		}
	}
}

// writeFrame writes one masked frame.
func (c *wsConn) writeFrame(op byte, p []byte, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	return c.writeLocked(op, p, timeout)
}

func (c *wsConn) writeLocked(op byte, p []byte, timeout time.Duration) error {
	b := append(c.wbuf[:0], 0x80|op)
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	b = append(b, mask[:]...)
	off := len(b)
	b = append(b, p...)
	for i := range b[off:] {
		b[off+i] ^= mask[i&3]
	}
	if cap(b) <= 8192 {
		c.wbuf = b
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.nc.Write(b)
	return err
}

// writeText sends one text message.
func (c *wsConn) writeText(ctx context.Context, p []byte) error {
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return c.writeFrame(wsText, p, timeout)
}

// sendClose sends a close frame with code, once.
func (c *wsConn) sendClose(code int) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return
	}
	c.closeSent = true
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], uint16(code))
	_ = c.writeLocked(wsClose, p[:], 5*time.Second)
}

// closeWith starts the closing handshake with code: the reading goroutine
// ends when the server's close frame arrives, or after 5 s.
func (c *wsConn) closeWith(code int) {
	c.sendClose(code)
	at := time.Now().Add(5 * time.Second)
	c.closeAt.Store(at.UnixNano())
	c.closing.Store(true)
	_ = c.nc.SetReadDeadline(at)
}

// closeNow closes the TCP connection and returns the read buffer.
// Only the reading goroutine may call it, once it stopped reading.
func (c *wsConn) closeNow() {
	_ = c.nc.Close()
	c.unread = nil
	c.releaseBig()
}
