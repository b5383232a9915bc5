package sim

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strings"
)

// This file is the server side of RFC 6455, written on the hijacked
// connection rather than with a WebSocket library: the writer must put many
// frames in one syscall, and faults need exact control of the wire (a TCP
// cut without a close frame, one payload split over two messages).

// WebSocket opcodes.
const (
	wsContinuation = 0x0
	wsText         = 0x1
	wsBinary       = 0x2
	wsClose        = 0x8
	wsPing         = 0x9
	wsPong         = 0xa
)

// WebSocket close codes the server uses besides Discord's.
const (
	wsCloseProtocolError  = 1002
	wsCloseNoStatus       = 1005 // no code in the client's close frame
	wsCloseServiceRestart = 1012
)

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey computes Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// headerHasToken reports whether a comma-separated header holds token,
// ignoring case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// isUpgrade reports whether r asks for a WebSocket.
func isUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

// checkUpgrade validates a WebSocket opening handshake and returns the key,
// or an HTTP status and message saying what is wrong.
func checkUpgrade(r *http.Request) (key string, status int, msg string) {
	if r.Method != http.MethodGet {
		return "", http.StatusMethodNotAllowed, "WebSocket upgrade needs GET"
	}
	if !isUpgrade(r) {
		return "", http.StatusUpgradeRequired, "this is the gateway: connect with a WebSocket"
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return "", http.StatusUpgradeRequired, "unsupported Sec-WebSocket-Version, want 13"
	}
	key = r.Header.Get("Sec-WebSocket-Key")
	if b, err := base64.StdEncoding.DecodeString(key); err != nil || len(b) != 16 {
		return "", http.StatusBadRequest, "bad Sec-WebSocket-Key"
	}
	return key, 0, ""
}

// upgradeResponse is the 101 answer to a handshake with key.
func upgradeResponse(key string) []byte {
	return []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		acceptKey(key) + "\r\n\r\n")
}

// Errors of the frame reader.
var (
	// errProtocol is a frame that breaks RFC 6455; the connection is closed
	// with 1002.
	errProtocol = errors.New("websocket protocol error")
	// errTooLarge is a message above the size limit; the gateway closes it
	// with 4002.
	errTooLarge = errors.New("message too large")
)

// wsReader reads a client's frames: masked, possibly fragmented data
// messages and control frames in between.
type wsReader struct {
	br    *bufio.Reader
	limit int    // largest data message accepted
	msg   []byte // the data message being assembled
	op    byte   // its opcode; 0 when none is in progress
	skip  bool   // the message in progress is too large: discard its frames
	ctl   [125]byte
	hdr   [8]byte
}

// next returns the next complete data message (op wsText or wsBinary) or
// control frame (op wsClose, wsPing, wsPong). The returned payload is valid
// until the next call.
func (r *wsReader) next() (op byte, payload []byte, err error) {
	for {
		if _, err := io.ReadFull(r.br, r.hdr[:2]); err != nil {
			return 0, nil, err
		}
		b0, b1 := r.hdr[0], r.hdr[1]
		fin, rsv, fop := b0&0x80 != 0, b0&0x70, b0&0x0f
		masked, n := b1&0x80 != 0, uint64(b1&0x7f)
		if rsv != 0 || !masked {
			return 0, nil, errProtocol
		}
		switch n {
		case 126:
			if _, err := io.ReadFull(r.br, r.hdr[:2]); err != nil {
				return 0, nil, err
			}
			n = uint64(binary.BigEndian.Uint16(r.hdr[:2]))
		case 127:
			if _, err := io.ReadFull(r.br, r.hdr[:8]); err != nil {
				return 0, nil, err
			}
			n = binary.BigEndian.Uint64(r.hdr[:8])
			if n>>63 != 0 {
				return 0, nil, errProtocol
			}
		}
		var key [4]byte
		if _, err := io.ReadFull(r.br, key[:]); err != nil {
			return 0, nil, err
		}
		switch fop {
		case wsClose, wsPing, wsPong:
			if !fin || n > 125 {
				return 0, nil, errProtocol
			}
			p := r.ctl[:n]
			if _, err := io.ReadFull(r.br, p); err != nil {
				return 0, nil, err
			}
			unmask(p, key, 0)
			return fop, p, nil
		case wsText, wsBinary:
			if r.op != 0 {
				return 0, nil, errProtocol
			}
			r.op, r.msg = fop, r.msg[:0]
		case wsContinuation:
			if r.op == 0 {
				return 0, nil, errProtocol
			}
		default:
			return 0, nil, errProtocol
		}
		if r.skip || n > uint64(r.limit-len(r.msg)) {
			// Discard the payload so the stream stays in step; the caller
			// closes the connection.
			if _, err := io.CopyN(io.Discard, r.br, int64(n)); err != nil {
				return 0, nil, err
			}
			r.msg = r.msg[:0]
			if fin {
				r.op, r.skip = 0, false
			} else {
				r.skip = true
			}
			return 0, nil, errTooLarge
		}
		start := len(r.msg)
		r.msg = append(r.msg, make([]byte, n)...)
		if _, err := io.ReadFull(r.br, r.msg[start:]); err != nil {
			return 0, nil, err
		}
		unmask(r.msg[start:], key, 0)
		if fin {
			op, r.op = r.op, 0
			return op, r.msg, nil
		}
	}
}

// unmask XORs p with the masking key, p starting at offset pos of the
// frame's payload.
func unmask(p []byte, key [4]byte, pos int) {
	for i := range p {
		p[i] ^= key[(pos+i)&3]
	}
}

// appendFrameHeader appends an unmasked, final frame header for a payload of
// n bytes.
func appendFrameHeader(dst []byte, op byte, n int) []byte {
	switch {
	case n < 126:
		return append(dst, 0x80|op, byte(n))
	case n <= 0xffff:
		return append(dst, 0x80|op, 126, byte(n>>8), byte(n))
	}
	return append(dst, 0x80|op, 127, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// frameStart reserves room for a frame header whose payload will be
// appended next; frameEnd fills it in. Most gateway payloads are 126-65535
// bytes, whose header takes the 4 reserved bytes; others are moved.
func frameStart(dst []byte) ([]byte, int) {
	return append(dst, 0, 0, 0, 0), len(dst)
}

func frameEnd(dst []byte, start int, op byte) []byte {
	n := len(dst) - start - 4
	switch {
	case n < 126:
		copy(dst[start+2:], dst[start+4:])
		dst = dst[:len(dst)-2]
		dst[start], dst[start+1] = 0x80|op, byte(n)
	case n <= 0xffff:
		dst[start], dst[start+1], dst[start+2], dst[start+3] = 0x80|op, 126, byte(n>>8), byte(n)
	default:
		dst = append(dst, 0, 0, 0, 0, 0, 0)
		copy(dst[start+10:], dst[start+4:len(dst)-6])
		appendFrameHeader(dst[start:start], op, n) // writes the 10 bytes in place
	}
	return dst
}

// closePayload is a close frame's payload: the code, then the reason
// (truncated to fit a control frame).
func closePayload(code int, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	return append(p, reason...)
}

// parseClose reads a client close frame's code (1005 when absent) and
// whether the payload is valid.
func parseClose(p []byte) (code int, ok bool) {
	switch {
	case len(p) == 0:
		return wsCloseNoStatus, true
	case len(p) == 1:
		return 0, false
	}
	return int(binary.BigEndian.Uint16(p)), true
}
