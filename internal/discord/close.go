package discord

import (
	"errors"
	"strconv"
)

// CloseCode is a WebSocket close status code as used by the gateway.
type CloseCode int

// Gateway close codes (4000-4014) and the WebSocket codes that matter to a
// gateway client.
const (
	CloseNormal               CloseCode = 1000 // from a client: ends the session
	CloseGoingAway            CloseCode = 1001 // from a client: ends the session
	CloseAbnormal             CloseCode = 1006 // no close frame: resume
	CloseServiceRestart       CloseCode = 1012 // used by some clients to close for a resume
	CloseUnknownError         CloseCode = 4000
	CloseUnknownOpcode        CloseCode = 4001
	CloseDecodeError          CloseCode = 4002
	CloseNotAuthenticated     CloseCode = 4003
	CloseAuthenticationFailed CloseCode = 4004
	CloseAlreadyAuthenticated CloseCode = 4005
	CloseSessionNoLongerValid CloseCode = 4006 // undocumented, historical
	CloseInvalidSeq           CloseCode = 4007
	CloseRateLimited          CloseCode = 4008
	CloseSessionTimedOut      CloseCode = 4009
	CloseInvalidShard         CloseCode = 4010
	CloseShardingRequired     CloseCode = 4011
	CloseInvalidAPIVersion    CloseCode = 4012
	CloseInvalidIntents       CloseCode = 4013
	CloseDisallowedIntents    CloseCode = 4014
)

// CloseAction is what a client should do after its connection closed with a
// given code.
type CloseAction int

const (
	// ActionResume: reconnect to resume_gateway_url and RESUME the session.
	ActionResume CloseAction = iota
	// ActionReidentify: the session is gone; reconnect to the base URL and IDENTIFY.
	ActionReidentify
	// ActionStop: the error is fatal for this shard (bad token, bad shard, bad
	// intents, bad API version); reconnecting would fail the same way.
	ActionStop
)

// String names the action.
func (a CloseAction) String() string {
	switch a {
	case ActionResume:
		return "resume"
	case ActionReidentify:
		return "reidentify"
	case ActionStop:
		return "stop"
	}
	return "CloseAction(" + strconv.Itoa(int(a)) + ")"
}

type closeInfo struct {
	reason string
	action CloseAction
}

// closeTable follows discord-gateway reference §12: fatal = 4004, 4010-4014;
// 4003, 4005, 4006, 4007, 4009 need a new session; everything else resumes.
var closeTable = map[CloseCode]closeInfo{
	CloseNormal:               {"Normal closure.", ActionReidentify},
	CloseGoingAway:            {"Going away.", ActionReidentify},
	CloseAbnormal:             {"Abnormal closure.", ActionResume},
	CloseServiceRestart:       {"Service restart.", ActionResume},
	CloseUnknownError:         {"Unknown error.", ActionResume},
	CloseUnknownOpcode:        {"Unknown opcode.", ActionResume},
	CloseDecodeError:          {"Error while decoding payload.", ActionResume},
	CloseNotAuthenticated:     {"Not authenticated.", ActionReidentify},
	CloseAuthenticationFailed: {"Authentication failed.", ActionStop},
	CloseAlreadyAuthenticated: {"Already authenticated.", ActionReidentify},
	CloseSessionNoLongerValid: {"Session no longer valid.", ActionReidentify},
	CloseInvalidSeq:           {"Invalid seq.", ActionReidentify},
	CloseRateLimited:          {"Rate limited.", ActionResume},
	CloseSessionTimedOut:      {"Session timed out.", ActionReidentify},
	CloseInvalidShard:         {"Invalid shard.", ActionStop},
	CloseShardingRequired:     {"Sharding required.", ActionStop},
	CloseInvalidAPIVersion:    {"Invalid API version.", ActionStop},
	CloseInvalidIntents:       {"Invalid intent(s).", ActionStop},
	CloseDisallowedIntents:    {"Disallowed intent(s).", ActionStop},
}

// Reason returns Discord's reason text for the code ("Rate limited."), or ""
// for a code Discord does not define.
func (c CloseCode) Reason() string { return closeTable[c].reason }

// Action returns what a client should do after a close with code c, as seen
// from the client: the server closing with 1000 means the session is gone.
// Unknown codes resume, as every mature client does.
func (c CloseCode) Action() CloseAction {
	if info, ok := closeTable[c]; ok {
		return info.action
	}
	return ActionResume
}

// Fatal reports whether a close with code c must stop the shard.
func (c CloseCode) Fatal() bool { return c.Action() == ActionStop }

// EndsSession reports whether a client that closes its own connection with
// code c ends its session on the server (1000 and 1001 do; any other code, or
// no close frame, keeps the session resumable).
func (c CloseCode) EndsSession() bool { return c == CloseNormal || c == CloseGoingAway }

// String returns "4004 Authentication failed." style text.
func (c CloseCode) String() string {
	s := strconv.Itoa(int(c))
	if r := c.Reason(); r != "" {
		s += " " + r
	}
	return s
}

// CloseError is the error a gateway connection ends with when the peer sent a
// close frame (or when the connection dropped without one: Code 1006).
type CloseError struct {
	Code   CloseCode
	Reason string // the reason text sent by the peer, possibly empty
}

// Error implements error.
func (e *CloseError) Error() string {
	r := e.Reason
	if r == "" {
		r = e.Code.Reason()
	}
	if r == "" {
		return "gateway closed with " + strconv.Itoa(int(e.Code))
	}
	return "gateway closed with " + strconv.Itoa(int(e.Code)) + ": " + r
}

// Action is shorthand for e.Code.Action().
func (e *CloseError) Action() CloseAction { return e.Code.Action() }

// CloseStatus returns the close code carried by err (or any error it wraps),
// or -1 when err is not a *CloseError.
func CloseStatus(err error) CloseCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}
