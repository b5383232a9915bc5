package discord

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
)

// errReference is the reference decoder's error for a payload that is valid
// JSON but not a routable header.
var errReference = errors.New("reference: not a routable header")

// reference reads a header the slow way: encoding/json decodes the whole
// payload into a map (exact keys, unescaped; the last duplicate wins), then
// each member, then d into a map for its guild key. It states ScanHeader's
// contract independently of its code.
func reference(p []byte) (Header, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(p, &top); err != nil {
		return Header{}, err
	}
	var h Header
	raw, ok := top["op"]
	if !ok || string(raw) == "null" {
		return Header{}, fmt.Errorf("%w: no op", errReference)
	}
	var op int
	if err := json.Unmarshal(raw, &op); err != nil {
		return Header{}, err
	}
	h.Op = Opcode(op)
	if raw, ok := top["s"]; ok {
		var s *int64
		if err := json.Unmarshal(raw, &s); err != nil {
			return Header{}, err
		}
		if s != nil {
			h.S = *s
		}
	}
	if raw, ok := top["t"]; ok && string(raw) != "null" {
		var t string
		if err := json.Unmarshal(raw, &t); err != nil {
			return Header{}, err
		}
		if t == "" || string(raw) != `"`+t+`"` || bytes.ContainsFunc([]byte(t), func(r rune) bool {
			return !('A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_')
		}) {
			return Header{}, fmt.Errorf("%w: t %s", errReference, raw)
		}
		h.T = []byte(t)
	}
	if raw, ok := top["d"]; ok {
		h.D = raw
		if raw[0] == '{' {
			var d map[string]json.RawMessage
			if err := json.Unmarshal(raw, &d); err != nil {
				return Header{}, err
			}
			key := "guild_id"
			switch string(h.T) {
			case "GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE":
				key = "id"
			}
			h.GuildID = referenceSnowflake(d[key])
		}
	}
	return h, nil
}

// referenceSnowflake is the guild ID a raw JSON value holds: a string without
// escapes, or a number, that ParseSnowflake accepts; else 0.
func referenceSnowflake(raw json.RawMessage) Snowflake {
	text := string(raw)
	if len(text) >= 2 && text[0] == '"' {
		text = text[1 : len(text)-1]
		if bytes.IndexByte([]byte(text), '\\') >= 0 {
			return 0
		}
	}
	id, err := ParseSnowflake(text)
	if err != nil {
		return 0
	}
	return id
}

// onlyLastD reports whether valid JSON p has exactly one member "d" and it
// is the last one.
func onlyLastD(p []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(p))
	if _, err := dec.Token(); err != nil {
		return false
	}
	var last string
	count := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		last, _ = tok.(string)
		if last == "d" {
			count++
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil && err != io.EOF {
			return false
		}
	}
	return count == 1 && last == "d"
}

// FuzzScanHeader checks ScanHeader against reference.
//
//   - When ScanHeader fails, the payload must be invalid for the reference too.
//   - When it reads the whole payload, it must agree with the reference
//     exactly: same error or success, same header.
//   - When it reads d's last members backward, the envelope it read forward
//     with a d made of just those members must give the same header; if p
//     is valid and d its only last member, the header must be exact.
//   - When it stops early after n bytes, what it read must be a valid prefix:
//     p[:n] closed with "}}" must decode to the same op, s, t and guild ID,
//     and D must start with that prefix's d. If moreover p is valid and d is
//     its only last member, D must be d exactly.
func FuzzScanHeader(f *testing.F) {
	for _, frame := range []string{
		helloFrame, ackFrame, reconnect, invalidFrame, resumedFrame, readyFrame, presenceFrame,
		guildDelete, guildUpdate, guildCreateSmall,
		string(messageCreateFrame(1024, false)), string(messageCreateFrame(1024, true)),
		string(guildCreateFrame(4 << 10)),
		`{"op":1,"d":251}`, `{"op":1,"d":null}`, `{"op":6,"d":{"token":"t","session_id":"s","seq":1}}`,
	} {
		f.Add([]byte(frame))
	}
	for _, tt := range semanticsTests {
		f.Add([]byte(tt.in))
	}
	for _, tt := range errorTests {
		f.Add([]byte(tt.in))
	}
	f.Add([]byte(nested(70)))
	f.Fuzz(func(t *testing.T, p []byte) {
		h, n, tail, err := scanHeader(p)
		want, wantErr := reference(p)
		switch {
		case err != nil:
			if !errors.Is(err, ErrBadPayload) {
				t.Fatalf("ScanHeader(%q) = %v, want %v", p, err, ErrBadPayload)
			}
			if wantErr == nil {
				t.Fatalf("ScanHeader(%q) = %v, want %s", p, err, fmtHeader(want))
			}
		case tail > 0:
			// It read p[:n] forward up to d's opening brace, then d's last
			// members p[tail:] backward: d made of just those members must
			// give the same header.
			q := append(append(p[:n:n], '{'), p[tail:]...)
			wantQ, err := reference(q)
			if err != nil {
				t.Fatalf("ScanHeader(%q) read %q and %q, but together they are invalid: %v", p, p[:n], p[tail:], err)
			}
			if fmtHeader(Header{Op: h.Op, S: h.S, T: h.T, GuildID: h.GuildID}) != fmtHeader(Header{Op: wantQ.Op, S: wantQ.S, T: wantQ.T, GuildID: wantQ.GuildID}) {
				t.Fatalf("ScanHeader(%q) = %s from its tail, want %s", p, fmtHeader(h), fmtHeader(wantQ))
			}
			if !bytes.HasPrefix(p[n:], h.D) || h.D[0] != '{' || h.D[len(h.D)-1] != '}' {
				t.Fatalf("ScanHeader(%q).D = %q, want d from its opening brace", p, h.D)
			}
			if wantErr == nil && onlyLastD(p) && fmtHeader(h) != fmtHeader(want) {
				t.Fatalf("ScanHeader(%q) = %s from its tail, want %s", p, fmtHeader(h), fmtHeader(want))
			}
		case n == len(p):
			if wantErr != nil {
				t.Fatalf("ScanHeader(%q) = %s, want an error like %v", p, fmtHeader(h), wantErr)
			}
			if fmtHeader(h) != fmtHeader(want) {
				t.Fatalf("ScanHeader(%q) = %s, want %s", p, fmtHeader(h), fmtHeader(want))
			}
		default:
			q := append(p[:n:n], "}}"...)
			wantQ, err := reference(q)
			if err != nil {
				t.Fatalf("ScanHeader(%q) stopped after %d bytes, but %q is invalid: %v", p, n, q, err)
			}
			wantQ.D = wantQ.D[:len(wantQ.D)-1] // without the brace we added
			if fmtHeader(Header{Op: h.Op, S: h.S, T: h.T, GuildID: h.GuildID}) != fmtHeader(Header{Op: wantQ.Op, S: wantQ.S, T: wantQ.T, GuildID: wantQ.GuildID}) ||
				!bytes.HasPrefix(h.D, wantQ.D) || h.D[len(h.D)-1] != '}' {
				t.Fatalf("ScanHeader(%q) = %s after %d bytes, want %s and a d that starts with %q and ends with }", p, fmtHeader(h), n, fmtHeader(wantQ), wantQ.D)
			}
			if wantErr == nil && onlyLastD(p) && !bytes.Equal(h.D, want.D) {
				t.Fatalf("ScanHeader(%q).D = %q, want %q", p, h.D, want.D)
			}
		}
		if err == nil {
			if cap(h.T) != len(h.T) || cap(h.D) != len(h.D) {
				t.Fatalf("ScanHeader(%q): cap(T), cap(D) = %d, %d, want %d, %d", p, cap(h.T), cap(h.D), len(h.T), len(h.D))
			}
			if h.T != nil && !bytes.Contains(p, h.T) || h.D != nil && !bytes.Contains(p, h.D) {
				t.Fatalf("ScanHeader(%q): T or D not from the payload", p)
			}
		}
	})
}
