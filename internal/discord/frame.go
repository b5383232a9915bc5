package discord

import "strconv"

// AppendFrame appends a server payload to dst with Discord's key order
// {"t":…,"s":…,"op":…,"d":…}. A t of "" and an s of 0 are written as null,
// and a nil d as null. t must be a plain event name ([A-Z_]+); d must be
// valid JSON.
func AppendFrame(dst []byte, t string, s int64, op Opcode, d []byte) []byte {
	dst = append(dst, `{"t":`...)
	if t == "" {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '"')
		dst = append(dst, t...)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"s":`...)
	if s == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = strconv.AppendInt(dst, s, 10)
	}
	dst = append(dst, `,"op":`...)
	dst = strconv.AppendInt(dst, int64(op), 10)
	dst = append(dst, `,"d":`...)
	if d == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, d...)
	}
	return append(dst, '}')
}
