package discord

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/bits"
)

// ErrBadPayload is returned by [ScanHeader] for a payload it cannot route:
// malformed JSON in the part it reads, a top-level value that is not an
// object, a missing, null or non-integer op, an s that is neither null nor an
// integer, or a t that is neither null nor a plain event name. It carries no
// position: wrapping it would cost an allocation on a path that has none.
var ErrBadPayload = errors.New("discord: malformed gateway payload")

// maxNesting is encoding/json's limit on nested arrays and objects, the
// envelope included. ScanHeader uses the same limit so that the two agree on
// what is valid.
const maxNesting = 10000

// Header is what the event path needs from a gateway payload, without
// decoding d. T and D alias the payload, with their capacity cut to their
// length so that appending to them cannot overwrite it; they are valid as long
// as the payload's bytes are.
type Header struct {
	Op      Opcode
	S       int64     // 0 when null or absent
	T       []byte    // event name; aliases the payload; nil when null or absent
	GuildID Snowflake // d.guild_id, or d.id for GUILD_CREATE / GUILD_UPDATE / GUILD_DELETE; 0 when absent or null
	D       []byte    // the raw d value (aliases the payload), so callers can forward it without re-scanning
}

// IsDispatch reports whether the payload is an event (op 0).
func (h Header) IsDispatch() bool { return h.Op == OpDispatch }

// TypeIs reports whether the event name is name, without allocating. Since
// ScanHeader never returns an empty name, TypeIs("") reports whether t was
// null or absent.
func (h Header) TypeIs(name string) bool { return string(h.T) == name }

// ScanHeader reads op, s, t and the guild ID of a gateway payload without
// decoding d. It allocates nothing: it walks the JSON tokens, skips values it
// does not need, and stops as soon as it has everything.
//
// The payload must be one JSON object (whitespace allowed anywhere JSON allows
// it). Its members may come in any order; when a key repeats, the last one
// wins, as when encoding/json decodes into a map. Keys match exactly after
// JSON unescaping ("o\u0070" is op; "OP" is not), unlike encoding/json's
// case-insensitive struct fields. Members other than op, s, t and d are
// skipped.
//
//   - op must be an integer (no fraction or exponent) that fits in an int.
//   - s must be null or an int64 integer; null or absent gives 0.
//   - t must be null or a non-empty string of A-Z, 0-9 and _ with no escapes.
//     Discord's event names are of that form, so T is returned raw and is safe
//     to use as a subject token; anything else is ErrBadPayload.
//   - D is d's raw value with surrounding whitespace trimmed ("null" for a
//     null d), or nil when d is absent.
//   - GuildID comes from d's own members only, never from nested objects: d.id
//     when t is GUILD_CREATE, GUILD_UPDATE or GUILD_DELETE, d.guild_id
//     otherwise. Its value may be a JSON string of decimal digits (what Discord
//     sends) or a JSON number; a value that is null, negative, fractional,
//     larger than 2^64-1, escaped or of another type gives 0, not an error.
//
// # Early exit
//
// When op, s and t all come before d, as in every frame Discord sends, d is
// an object, and the payload ends with d's closing brace and the envelope's,
// ScanHeader first reads d's last members backward from that end, at most
// maxTailMembers of them and only while they are scalars (numbers, literals,
// strings without backslashes or control characters) separated by JSON
// structure. Discord sends guild_id among the last members of d, so for most
// events that finds the guild key at once and nothing else of d is read. When
// it does not, ScanHeader reads d forward and stops right after the guild ID
// it wants, with the same condition on the payload's end. D then runs
// to d's closing brace, found from the end. Nothing between the point of exit
// and the last two braces is read: malformed JSON there, a later duplicate of
// the guild key or of an envelope member, or a member after d ending in "}"
// go undetected. When the payload does not end in two braces, ScanHeader reads
// on as if it had not stopped. Without an early exit, the whole payload is
// checked to be valid JSON, with encoding/json's rules, except that invalid
// UTF-8 inside strings is accepted as encoding/json accepts it.
func ScanHeader(p []byte) (Header, error) {
	h, _, _, err := scanHeader(p)
	return h, err
}

// scanHeader is ScanHeader that also says what it read: p[:n], n = len(p)
// after a full read and less after an early exit; and, when tail > 0, also
// p[tail:], the members of d it read backward from the end (n is then the
// index of d's opening brace).
func scanHeader(p []byte) (Header, int, int, error) {
	var (
		h Header
		// A member whose value has the wrong type only fails the payload if
		// no later duplicate replaces it, so badness is recorded, not returned.
		haveOp, sSeen, badS, tSeen, badT bool
		tailTried                        bool      // the tail did not allow an early exit
		guildID, id                      Snowflake // d.guild_id and d.id of the last d
	)
	i := skipSpace(p, 0)
	if i >= len(p) || p[i] != '{' {
		return Header{}, 0, 0, ErrBadPayload
	}
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return Header{}, 0, 0, ErrBadPayload // {}: no op
	}
	for {
		var k keyKind
		k, i = readKey(p, i)
		if i < 0 {
			return Header{}, 0, 0, ErrBadPayload
		}
		switch k {
		case keyOp:
			haveOp = false
			if isNull(p, i) {
				i += len("null")
				break
			}
			v, j := parseInt(p, i)
			if j < 0 || int64(int(v)) != v {
				i = skipValue(p, i, 1)
				break
			}
			h.Op, haveOp, i = Opcode(v), true, j
		case keyS:
			sSeen, badS, h.S = true, false, 0
			if isNull(p, i) {
				i += len("null")
				break
			}
			v, j := parseInt(p, i)
			if j < 0 {
				badS = true
				i = skipValue(p, i, 1)
				break
			}
			h.S, i = v, j
		case keyT:
			tSeen, badT, h.T = true, false, nil
			if isNull(p, i) {
				i += len("null")
				break
			}
			name, j := eventName(p, i)
			if j < 0 {
				badT = true
				i = skipValue(p, i, 1)
				break
			}
			h.T, i = name, j
		case keyD:
			start := i
			if p[i] != '{' {
				guildID, id = 0, 0
				i = skipValue(p, i, 1)
				if i >= 0 {
					h.D = p[start:i:i]
				}
				break
			}
			early := haveOp && sSeen && tSeen && !badS && !badT && !tailTried
			if early {
				// Discord puts the guild key among d's last members: look
				// there first, reading backward, before walking all of d.
				if end := tailOfD(p, i); end > 0 {
					if g, from, ok := tailGuild(p, i, end, isGuildEvent(h.T)); ok {
						h.D, h.GuildID = p[start:end:end], g
						return h, i, from, nil
					}
				} else {
					tailTried = true
				}
			}
			var stop int
			guildID, id, i, stop = scanD(p, i, early, isGuildEvent(h.T))
			tailTried = tailTried || stop < 0
			if stop > 0 {
				h.D = p[start:stop:stop]
				h.GuildID = pickGuild(h.T, guildID, id)
				return h, i, 0, nil
			}
			if i >= 0 {
				h.D = p[start:i:i]
			}
		default:
			i = skipValue(p, i, 1)
		}
		if i < 0 {
			return Header{}, 0, 0, ErrBadPayload
		}
		i = skipSpace(p, i)
		if i >= len(p) {
			return Header{}, 0, 0, ErrBadPayload
		}
		if p[i] == ',' {
			i = skipSpace(p, i+1)
			continue
		}
		if p[i] != '}' {
			return Header{}, 0, 0, ErrBadPayload
		}
		break
	}
	if skipSpace(p, i+1) != len(p) || !haveOp || badS || badT {
		return Header{}, 0, 0, ErrBadPayload
	}
	h.GuildID = pickGuild(h.T, guildID, id)
	return h, len(p), 0, nil
}

// scanD reads the members of the object d opening at p[i], recording the last
// guild_id and id among them. It returns the index after d, or -1 when d is
// malformed. When early is set and it reads the key the event routes by (id
// if byID, else guild_id), it checks the payload's tail; if the tail is d's
// closing brace and the envelope's, it returns at once with next just after
// the value read and stop at the end of d. Otherwise stop is -1 if it checked
// the tail, which then will not allow an early exit at any later point
// either, and 0 if it did not.
func scanD(p []byte, i int, early, byID bool) (guildID, id Snowflake, next, stop int) {
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return 0, 0, i + 1, 0
	}
	for {
		var k keyKind
		k, i = readKey(p, i)
		if i < 0 {
			return 0, 0, -1, 0
		}
		switch k {
		case keyGuildID, keyID:
			var v Snowflake
			v, i = guildValue(p, i)
			if i < 0 {
				return 0, 0, -1, 0
			}
			if k == keyID {
				id = v
			} else {
				guildID = v
			}
			if early && (k == keyID) == byID {
				if end := tailOfD(p, i); end > 0 {
					return guildID, id, i, end
				}
				early, stop = false, -1
			}
		default:
			i = skipValue(p, i, 2)
			if i < 0 {
				return 0, 0, -1, 0
			}
		}
		i = skipSpace(p, i)
		if i >= len(p) {
			return 0, 0, -1, 0
		}
		switch p[i] {
		case ',':
			i = skipSpace(p, i+1)
		case '}':
			return guildID, id, i + 1, stop
		default:
			return 0, 0, -1, 0
		}
	}
}

// tailOfD returns the index after d's closing brace when p ends, after index
// from, with "}" space "}" space; else 0.
func tailOfD(p []byte, from int) int {
	j := len(p) - 1
	for j >= from && isSpace(p[j]) {
		j--
	}
	if j < from || p[j] != '}' {
		return 0
	}
	j--
	for j >= from && isSpace(p[j]) {
		j--
	}
	if j < from || p[j] != '}' {
		return 0
	}
	return j + 1
}

// maxTailMembers bounds how many of d's last members tailGuild reads.
const maxTailMembers = 4

// tailGuild reads the members of d backward from d's closing brace at
// p[end-1], d opening at p[open], looking for the routing key (id if byID,
// else guild_id). It reads only scalar members and gives up (ok false) at
// the first container value, string with a backslash or a control
// character, or token out of place, after maxTailMembers members, or at d's
// opening brace. When it finds the key it returns its value as guildValue
// reads it and the index of the first byte of the members it read.
//
// Backward reading is sound for these members: a string holding no
// backslash holds no quote, so the quote before its closing one opens it;
// and a member reached this way from d's closing brace, with only scalars
// and separators in between, is a member of d itself.
func tailGuild(p []byte, open, end int, byID bool) (g Snowflake, from int, ok bool) {
	key := "guild_id"
	if byID {
		key = "id"
	}
	j := end - 1 // d's closing brace
	for range maxTailMembers {
		j = skipSpaceBack(p, j-1, open)
		// The value.
		vEnd := j + 1
		var vStart int
		switch c := p[j]; {
		case c == '"':
			if vStart = plainStringBack(p, j, open); vStart < 0 {
				return 0, 0, false
			}
		case c-'0' < 10 || c == 'e' || c == 'l':
			k := j
			for k > open && isScalarByte(p[k-1]) {
				k--
			}
			if skipValue(p, k, 2) != vEnd {
				return 0, 0, false
			}
			vStart = k
		default:
			return 0, 0, false // a container, or not JSON
		}
		// The colon and the key.
		j = skipSpaceBack(p, vStart-1, open)
		if j <= open || p[j] != ':' {
			return 0, 0, false
		}
		j = skipSpaceBack(p, j-1, open)
		if j <= open || p[j] != '"' {
			return 0, 0, false
		}
		kEnd := j
		kStart := plainStringBack(p, kEnd, open)
		if kStart < 0 {
			return 0, 0, false
		}
		// What comes before the member: a comma, or d's opening brace.
		j = skipSpaceBack(p, kStart-1, open)
		if p[j] != ',' && j != open {
			return 0, 0, false
		}
		if string(p[kStart+1:kEnd]) == key {
			v, e := guildValue(p, vStart)
			if e != vEnd {
				return 0, 0, false
			}
			return v, kStart, true
		}
		if j == open {
			return 0, 0, false
		}
	}
	return 0, 0, false
}

// plainStringBack returns the index of the opening quote of the string
// whose closing quote is p[j], or -1 when it holds a backslash or a control
// character or starts at or before p[floor].
func plainStringBack(p []byte, j, floor int) int {
	k := bytes.LastIndexByte(p[floor+1:j], '"')
	if k < 0 {
		return -1
	}
	k += floor + 1
	for _, c := range p[k+1 : j] {
		if c == '\\' || c < ' ' {
			return -1
		}
	}
	return k
}

// skipSpaceBack returns the index of the last non-space byte at or before
// p[j], and not before p[floor].
func skipSpaceBack(p []byte, j, floor int) int {
	for j > floor && isSpace(p[j]) {
		j--
	}
	return j
}

// isScalarByte reports whether c can be part of a JSON number or literal.
func isScalarByte(c byte) bool {
	return c-'0' < 10 || c-'a' < 26 || c == '.' || c == '-' || c == '+' || c == 'E'
}

// pickGuild returns the guild ID an event routes by.
func pickGuild(t []byte, guildID, id Snowflake) Snowflake {
	if isGuildEvent(t) {
		return id
	}
	return guildID
}

// isGuildEvent reports whether t is an event whose d is a guild object, and so
// carries the guild's ID in d.id.
func isGuildEvent(t []byte) bool {
	switch string(t) {
	case "GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE":
		return true
	}
	return false
}

// keyKind names the member keys ScanHeader looks for.
type keyKind uint8

const (
	keyOther keyKind = iota
	keyOp
	keyS
	keyT
	keyD
	keyGuildID
	keyID
)

// readKey reads a member's key at p[i] and the colon after it. It returns
// the key's kind and the index of the value, or -1 when the key is malformed
// or no value follows.
func readKey(p []byte, i int) (keyKind, int) {
	if i >= len(p) || p[i] != '"' {
		return 0, -1
	}
	end, esc := scanString(p, i+1)
	if end < 0 {
		return 0, -1
	}
	var k keyKind
	if esc {
		k = escapedKeyKind(p[i+1 : end-1])
	} else {
		k = plainKeyKind(p[i+1 : end-1])
	}
	i = skipSpace(p, end)
	if i >= len(p) || p[i] != ':' {
		return 0, -1
	}
	i = skipSpace(p, i+1)
	if i >= len(p) {
		return 0, -1
	}
	return k, i
}

// plainKeyKind classifies a key without escapes.
func plainKeyKind(key []byte) keyKind {
	switch len(key) {
	case 1:
		switch key[0] {
		case 's':
			return keyS
		case 't':
			return keyT
		case 'd':
			return keyD
		}
	case 2:
		switch string(key) {
		case "op":
			return keyOp
		case "id":
			return keyID
		}
	case len("guild_id"):
		if string(key) == "guild_id" {
			return keyGuildID
		}
	}
	return keyOther
}

// escapedKeyKind classifies a key that contains escapes, already checked by
// scanString, by unescaping it into a small buffer. Keys that unescape to
// anything but short ASCII are keyOther.
func escapedKeyKind(raw []byte) keyKind {
	var buf [len("guild_id")]byte
	n := 0
	for i := 0; i < len(raw); {
		if n == len(buf) {
			return keyOther
		}
		c := raw[i]
		switch {
		case c >= 0x80:
			return keyOther
		case c != '\\':
			i++
		case raw[i+1] == 'u':
			r := hexValue(raw[i+2])<<12 | hexValue(raw[i+3])<<8 | hexValue(raw[i+4])<<4 | hexValue(raw[i+5])
			if r >= 0x80 {
				return keyOther
			}
			c = byte(r)
			i += 6
		default:
			c = unescapeByte(raw[i+1])
			i += 2
		}
		buf[n] = c
		n++
	}
	return plainKeyKind(buf[:n])
}

// unescapeByte returns the byte a two-character escape \c stands for.
func unescapeByte(c byte) byte {
	switch c {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return c // " \ /
}

// hexValue returns the value of a hex digit, already checked by scanString.
func hexValue(c byte) rune {
	switch {
	case c <= '9':
		return rune(c - '0')
	case c >= 'a':
		return rune(c - 'a' + 10)
	}
	return rune(c - 'A' + 10)
}

// eventName reads t's string value at p[i]. It returns the name without
// quotes and the index after it, or -1 unless the value is a non-empty string
// of A-Z, 0-9 and _.
func eventName(p []byte, i int) ([]byte, int) {
	if p[i] != '"' {
		return nil, -1
	}
	start := i + 1
	for i = start; i < len(p) && isNameByte(p[i]); i++ {
	}
	if i == start || i >= len(p) || p[i] != '"' {
		return nil, -1
	}
	return p[start:i:i], i + 1
}

// isNameByte reports whether c may appear in an event name.
func isNameByte(c byte) bool {
	return c-'A' < 26 || c-'0' < 10 || c == '_'
}

// guildValue reads a guild key's value at p[i] and returns the snowflake it
// holds (0 unless it is a plain string of digits or a non-negative integer
// that fits in 64 bits) and the index after the value, or -1 when the value is
// malformed JSON.
func guildValue(p []byte, i int) (Snowflake, int) {
	switch c := p[i]; {
	case c == '"':
		end, esc := scanString(p, i+1)
		if end < 0 || esc {
			return 0, end
		}
		return digits(p[i+1 : end-1]), end
	case c == '-' || c-'0' < 10:
		end := skipNumber(p, i)
		if end < 0 {
			return 0, -1
		}
		return digits(p[i:end]), end
	}
	return 0, skipValue(p, i, 2)
}

// digits parses b as an unsigned decimal that fits in 64 bits, like
// ParseSnowflake, and returns 0 when it is not one.
func digits(b []byte) Snowflake {
	if len(b) == 0 {
		return 0
	}
	var v uint64
	for _, c := range b {
		d := uint64(c - '0')
		if d > 9 {
			return 0
		}
		hi, lo := bits.Mul64(v, 10)
		if hi != 0 || lo+d < lo {
			return 0
		}
		v = lo + d
	}
	return Snowflake(v)
}

// parseInt reads a JSON number at p[i] that must be an integer fitting in an
// int64. It returns the value and the index after the number, or -1 for
// anything else, including numbers with a fraction or an exponent.
func parseInt(p []byte, i int) (int64, int) {
	neg := false
	if i < len(p) && p[i] == '-' {
		neg = true
		i++
	}
	if i >= len(p) || p[i]-'0' > 9 {
		return 0, -1
	}
	limit := uint64(1<<63 - 1)
	if neg {
		limit = 1 << 63
	}
	var v uint64
	if p[i] == '0' {
		i++
	} else {
		for ; i < len(p) && p[i]-'0' < 10; i++ {
			d := uint64(p[i] - '0')
			if v > (limit-d)/10 {
				return 0, -1
			}
			v = v*10 + d
		}
	}
	if i < len(p) && (p[i] == '.' || p[i] == 'e' || p[i] == 'E') {
		return 0, -1
	}
	if neg {
		return int64(-v), i // -(1<<63) wraps to itself
	}
	return int64(v), i
}

// isNull reports whether the literal null starts at p[i].
func isNull(p []byte, i int) bool {
	return len(p)-i >= 4 && string(p[i:i+4]) == "null"
}

// isSpace reports whether c is JSON whitespace.
func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\r' || c == '\t'
}

// skipSpace returns the index of the first non-whitespace byte at or after i,
// or len(p).
func skipSpace(p []byte, i int) int {
	for i < len(p) && p[i] <= ' ' && isSpace(p[i]) {
		i++
	}
	return i
}

// skipValue skips the JSON value at p[i], where depth arrays and objects are
// open around it, and returns the index after it, or -1 when it is malformed.
// It does not skip the whitespace after the value.
func skipValue(p []byte, i, depth int) int {
	if i >= len(p) {
		return -1
	}
	switch p[i] {
	case '{', '[':
		return skipContainer(p, i, depth)
	case '"':
		end, _ := scanString(p, i+1)
		return end
	case 't':
		return skipLiteral(p, i, "true")
	case 'f':
		return skipLiteral(p, i, "false")
	case 'n':
		return skipLiteral(p, i, "null")
	}
	return skipNumber(p, i)
}

// skipLiteral returns the index after lit at p[i], or -1 if lit is not there.
func skipLiteral(p []byte, i int, lit string) int {
	if len(p)-i < len(lit) || string(p[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// skipNumber returns the index after the JSON number at p[i], or -1.
func skipNumber(p []byte, i int) int {
	if i < len(p) && p[i] == '-' {
		i++
	}
	if i >= len(p) || p[i]-'0' > 9 {
		return -1
	}
	if p[i] == '0' {
		i++
	} else {
		for i < len(p) && p[i]-'0' < 10 {
			i++
		}
	}
	if i < len(p) && p[i] == '.' {
		i++
		if i >= len(p) || p[i]-'0' > 9 {
			return -1
		}
		for i < len(p) && p[i]-'0' < 10 {
			i++
		}
	}
	if i < len(p) && (p[i] == 'e' || p[i] == 'E') {
		i++
		if i < len(p) && (p[i] == '+' || p[i] == '-') {
			i++
		}
		if i >= len(p) || p[i]-'0' > 9 {
			return -1
		}
		for i < len(p) && p[i]-'0' < 10 {
			i++
		}
	}
	return i
}

// skipContainer skips the object or array opening at p[i], with depth
// containers open around it, and returns the index after its closing
// bracket, or -1 when it is malformed or nests deeper than maxNesting. It
// keeps the kind of up to 64 open containers in a bit set and recurses for
// deeper ones, so it needs no allocation and little stack.
func skipContainer(p []byte, i, depth int) int {
	var (
		objects uint64 // bit k set: the k-th open container is an object
		open    uint   // containers open in this call
		inObj   bool   // the innermost open container is an object
	)
push: // p[i] is '{' or '['
	if depth >= maxNesting {
		return -1
	}
	depth++
	inObj = p[i] == '{'
	if inObj {
		objects |= 1 << open
	} else {
		objects &^= 1 << open
	}
	open++
	i = skipSpace(p, i+1)
	if i >= len(p) {
		return -1
	}
	if inObj {
		if p[i] == '}' {
			i++
			goto pop
		}
		goto key
	}
	if p[i] == ']' {
		i++
		goto pop
	}
value: // p[i] starts a value
	switch p[i] {
	case '{', '[':
		if open < 64 {
			goto push
		}
		i = skipContainer(p, i, depth)
	case '"':
		i, _ = scanString(p, i+1)
	case 't':
		i = skipLiteral(p, i, "true")
	case 'f':
		i = skipLiteral(p, i, "false")
	case 'n':
		i = skipLiteral(p, i, "null")
	default:
		i = skipNumber(p, i)
	}
	if i < 0 {
		return -1
	}
next: // a value has ended at i
	i = skipSpace(p, i)
	if i >= len(p) {
		return -1
	}
	switch p[i] {
	case ',':
		i = skipSpace(p, i+1)
		if i >= len(p) {
			return -1
		}
		if inObj {
			goto key
		}
		goto value
	case '}':
		if !inObj {
			return -1
		}
	case ']':
		if inObj {
			return -1
		}
	default:
		return -1
	}
	i++
pop: // a container has closed at i
	open--
	depth--
	if open == 0 {
		return i
	}
	inObj = objects&(1<<(open-1)) != 0
	goto next
key: // p[i] should start a member's key
	if p[i] != '"' {
		return -1
	}
	i, _ = scanString(p, i+1)
	if i < 0 {
		return -1
	}
	i = skipSpace(p, i)
	if i >= len(p) || p[i] != ':' {
		return -1
	}
	i = skipSpace(p, i+1)
	if i >= len(p) {
		return -1
	}
	goto value
}

// SWAR constants: one byte repeated in each of the eight bytes of a word.
const (
	ones   = 0x0101010101010101
	highs  = 0x8080808080808080
	slashs = '\\' * ones
)

// scanString reads the rest of a string whose opening quote is at p[i-1]. It
// returns the index after the closing quote and whether the string contains
// escapes, or -1 when it is unterminated or holds a control character or a
// bad escape. Bytes of 0x80 and above are accepted as they are, valid UTF-8
// or not, as encoding/json accepts them.
func scanString(p []byte, i int) (int, bool) {
	esc := false
	for {
		// Eight bytes at a time until one is '"', '\\' or below 0x20. A byte
		// is '"' or below 0x20 exactly when it is below 0x21 after flipping
		// bit 1, which maps '"' (0x22) to 0x20 and 0x00-0x1f onto itself.
		for len(p)-i >= 8 {
			w := binary.LittleEndian.Uint64(p[i:])
			m := below21(w^(2*ones)) | zeroBytes(w^slashs)
			if m != 0 {
				i += bits.TrailingZeros64(m) / 8
				goto special
			}
			i += 8
		}
		for i < len(p) && p[i] >= ' ' && p[i] != '"' && p[i] != '\\' {
			i++
		}
		if i >= len(p) {
			return -1, esc
		}
	special:
		switch p[i] {
		case '"':
			return i + 1, esc
		case '\\':
			esc = true
			if i+1 >= len(p) {
				return -1, esc
			}
			switch p[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(p)-i < 6 || !isHex(p[i+2]) || !isHex(p[i+3]) || !isHex(p[i+4]) || !isHex(p[i+5]) {
					return -1, esc
				}
				i += 6
			default:
				return -1, esc
			}
		default: // a control character
			return -1, esc
		}
	}
}

// zeroBytes returns a word with the high bit set in the lowest zero byte of
// w, clear in every byte below it, and meaningless above it (a borrow only
// moves upward), so that its trailing zeros locate that byte.
func zeroBytes(w uint64) uint64 {
	return (w - ones) &^ w & highs
}

// below21 is zeroBytes for the lowest byte below 0x21.
func below21(w uint64) uint64 {
	return (w - 0x21*ones) &^ w & highs
}

// isHex reports whether c is a hex digit.
func isHex(c byte) bool {
	return c-'0' < 10 || (c|0x20)-'a' < 6
}
