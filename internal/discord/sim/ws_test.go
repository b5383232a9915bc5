package sim

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
)

// clientFrame builds a masked client frame.
func clientFrame(fin bool, op byte, payload []byte, key [4]byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var b []byte
	switch n := len(payload); {
	case n < 126:
		b = []byte{b0, 0x80 | byte(n)}
	case n <= 0xffff:
		b = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		b = []byte{b0, 0x80 | 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i&3])
	}
	return b
}

type wsResult struct {
	op      byte
	payload string
	err     error
}

func readAll(in []byte, limit int) []wsResult {
	r := &wsReader{br: bufio.NewReader(bytes.NewReader(in)), limit: limit}
	var out []wsResult
	for {
		op, p, err := r.next()
		if errors.Is(err, io.EOF) {
			return out
		}
		out = append(out, wsResult{op, string(p), err})
		if err != nil && !errors.Is(err, errTooLarge) {
			return out
		}
	}
}

func TestWSReader(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	cat := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	tests := []struct {
		name string
		in   []byte
		want []wsResult
	}{
		{"text", clientFrame(true, wsText, []byte(`{"op":1}`), key), []wsResult{{wsText, `{"op":1}`, nil}}},
		{"fragmented with a ping inside", cat(
			clientFrame(false, wsText, []byte(`{"op"`), key),
			clientFrame(true, wsPing, []byte("hi"), key),
			clientFrame(true, wsContinuation, []byte(`:1}`), key),
		), []wsResult{{wsPing, "hi", nil}, {wsText, `{"op":1}`, nil}}},
		{"16-bit length", clientFrame(true, wsBinary, bytes.Repeat([]byte("x"), 300), key),
			[]wsResult{{wsBinary, string(bytes.Repeat([]byte("x"), 300)), nil}}},
		{"close", clientFrame(true, wsClose, []byte{0x03, 0xe8}, key), []wsResult{{wsClose, "\x03\xe8", nil}}},
		{"unmasked", []byte{0x81, 0x01, 'x'}, []wsResult{{0, "", errProtocol}}},
		{"reserved bit", append([]byte{0xc1}, clientFrame(true, wsText, []byte("x"), key)[1:]...), []wsResult{{0, "", errProtocol}}},
		{"unknown opcode", clientFrame(true, 0x3, []byte("x"), key), []wsResult{{0, "", errProtocol}}},
		{"continuation without start", clientFrame(true, wsContinuation, []byte("x"), key), []wsResult{{0, "", errProtocol}}},
		{"fragmented control", clientFrame(false, wsPing, []byte("x"), key), []wsResult{{0, "", errProtocol}}},
		{"too large, then in step", cat(
			clientFrame(true, wsText, bytes.Repeat([]byte("y"), 20), key),
			clientFrame(true, wsText, []byte("ok"), key),
		), []wsResult{{0, "", errTooLarge}, {wsText, "ok", nil}}},
		{"too large over fragments", cat(
			clientFrame(false, wsText, bytes.Repeat([]byte("y"), 10), key),
			clientFrame(true, wsContinuation, bytes.Repeat([]byte("y"), 10), key),
			clientFrame(true, wsText, []byte("ok"), key),
		), []wsResult{{0, "", errTooLarge}, {wsText, "ok", nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readAll(tt.in, 16)
			if tt.name == "16-bit length" {
				got = readAll(tt.in, 4096)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("read %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i].op != tt.want[i].op || got[i].payload != tt.want[i].payload || !errors.Is(got[i].err, tt.want[i].err) {
					t.Errorf("result %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestFrameHeaders(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		payload := bytes.Repeat([]byte("z"), n)
		var direct []byte
		direct = appendFrameHeader(direct, wsText, n)
		direct = append(direct, payload...)
		b, start := frameStart([]byte("prefix"))
		b = append(b, payload...)
		b = frameEnd(b, start, wsText)
		if !bytes.Equal(b[len("prefix"):], direct) || string(b[:6]) != "prefix" {
			t.Errorf("frameStart/frameEnd for %d bytes differs from appendFrameHeader", n)
		}
		// Read it back as a client would (server frames are unmasked).
		hdr := direct[:2]
		l := int(hdr[1])
		switch l {
		case 126:
			l = int(direct[2])<<8 | int(direct[3])
		case 127:
			l = int(direct[8])<<8 | int(direct[9]) | int(direct[7])<<16
		}
		if l != n || direct[0] != 0x81 {
			t.Errorf("header for %d bytes = % x", n, direct[:min(10, len(direct))])
		}
	}
}

func TestCheckUpgrade(t *testing.T) {
	good := func() *http.Request {
		r, _ := http.NewRequest("GET", "http://h/?v=10", nil)
		r.Header.Set("Connection", "keep-alive, Upgrade")
		r.Header.Set("Upgrade", "websocket")
		r.Header.Set("Sec-WebSocket-Version", "13")
		r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		return r
	}
	if key, status, _ := checkUpgrade(good()); status != 0 || acceptKey(key) != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("checkUpgrade(good) = %q, %d; accept %q", key, status, acceptKey(key))
	}
	for name, mod := range map[string]func(*http.Request){
		"POST":        func(r *http.Request) { r.Method = "POST" },
		"no upgrade":  func(r *http.Request) { r.Header.Del("Upgrade") },
		"version 8":   func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") },
		"bad key":     func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "short") },
		"missing key": func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") },
	} {
		r := good()
		mod(r)
		if _, status, msg := checkUpgrade(r); status == 0 || msg == "" {
			t.Errorf("checkUpgrade(%s) accepted", name)
		}
	}
}

func TestParseClose(t *testing.T) {
	tests := []struct {
		in   []byte
		code int
		ok   bool
	}{{nil, 1005, true}, {[]byte{0x0f}, 0, false}, {[]byte{0x03, 0xe8}, 1000, true}, {closePayload(4000, "bye"), 4000, true}}
	for _, tt := range tests {
		if code, ok := parseClose(tt.in); code != tt.code || ok != tt.ok {
			t.Errorf("parseClose(% x) = %d, %v; want %d, %v", tt.in, code, ok, tt.code, tt.ok)
		}
	}
}

// FuzzWSReader feeds arbitrary bytes to the frame reader, whole and split at
// a random point: it must never panic and must return the same messages.
func FuzzWSReader(f *testing.F) {
	key := [4]byte{9, 8, 7, 6}
	f.Add(clientFrame(true, wsText, []byte(`{"op":1,"d":null}`), key), 3)
	f.Add(append(clientFrame(false, wsText, []byte("ab"), key), clientFrame(true, wsContinuation, []byte("cd"), key)...), 5)
	f.Add([]byte{0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}, 1)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		whole := readAll(b, 4096)
		if split < 0 || split > len(b) {
			return
		}
		pieces := &splitReader{parts: [][]byte{b[:split], b[split:]}}
		r := &wsReader{br: bufio.NewReaderSize(pieces, 16), limit: 4096}
		for i := 0; ; i++ {
			op, p, err := r.next()
			if errors.Is(err, io.EOF) || i >= len(whole) {
				return
			}
			if op != whole[i].op || string(p) != whole[i].payload || !errors.Is(err, whole[i].err) && (err == nil) != (whole[i].err == nil) {
				t.Fatalf("message %d split at %d = %d %q %v, whole = %+v", i, split, op, p, err, whole[i])
			}
			if err != nil && !errors.Is(err, errTooLarge) {
				return
			}
		}
	})
}

type splitReader struct{ parts [][]byte }

func (s *splitReader) Read(p []byte) (int, error) {
	for len(s.parts) > 0 && len(s.parts[0]) == 0 {
		s.parts = s.parts[1:]
	}
	if len(s.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.parts[0])
	s.parts[0] = s.parts[0][n:]
	return n, nil
}
