package discord

import (
	"errors"
	"strconv"
	"time"
)

// Epoch is the Discord epoch, 2015-01-01T00:00:00Z, in Unix milliseconds.
const Epoch = 1420070400000

// Snowflake is a Discord ID: bits 63-22 hold milliseconds since [Epoch],
// 21-17 a worker ID, 16-12 a process ID and 11-0 an increment. In JSON it is
// a string.
type Snowflake uint64

// ErrBadSnowflake is returned when text is not a valid snowflake.
var ErrBadSnowflake = errors.New("discord: invalid snowflake")

// NewSnowflake builds a snowflake from a time and the low 22 bits.
func NewSnowflake(t time.Time, worker, process, increment uint64) Snowflake {
	ms := uint64(t.UnixMilli() - Epoch)
	return Snowflake(ms<<22 | (worker&0x1f)<<17 | (process&0x1f)<<12 | increment&0xfff)
}

// ParseSnowflake parses a decimal snowflake.
func ParseSnowflake(s string) (Snowflake, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || s == "" {
		return 0, ErrBadSnowflake
	}
	return Snowflake(v), nil
}

// Time returns the creation time encoded in the snowflake.
func (s Snowflake) Time() time.Time { return time.UnixMilli(int64(s>>22) + Epoch).UTC() }

// String returns the decimal form.
func (s Snowflake) String() string { return strconv.FormatUint(uint64(s), 10) }

// MarshalJSON writes the snowflake as a JSON string.
func (s Snowflake) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 22)
	b = append(b, '"')
	b = strconv.AppendUint(b, uint64(s), 10)
	return append(b, '"'), nil
}

// UnmarshalJSON accepts a JSON string or number; null leaves s unchanged.
func (s *Snowflake) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		b = b[1 : len(b)-1]
	}
	v, err := ParseSnowflake(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
