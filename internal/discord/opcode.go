package discord

import "strconv"

// Opcode is a gateway payload's op field.
type Opcode int

// Gateway opcodes. Direction in brackets: S server to client, C client to server.
const (
	OpDispatch                Opcode = 0  // [S] an event; carries s and t
	OpHeartbeat               Opcode = 1  // [C,S] heartbeat; from the server: "beat now"
	OpIdentify                Opcode = 2  // [C] start a new session
	OpPresenceUpdate          Opcode = 3  // [C] update the bot's presence
	OpVoiceStateUpdate        Opcode = 4  // [C] join, move or leave a voice channel
	OpResume                  Opcode = 6  // [C] resume a session
	OpReconnect               Opcode = 7  // [S] reconnect and resume
	OpRequestGuildMembers     Opcode = 8  // [C] request GUILD_MEMBERS_CHUNK dispatches
	OpInvalidSession          Opcode = 9  // [S] d is true when the session may be resumed
	OpHello                   Opcode = 10 // [S] first payload; d.heartbeat_interval
	OpHeartbeatACK            Opcode = 11 // [S] answer to a heartbeat
	OpRequestSoundboardSounds Opcode = 31 // [C] request SOUNDBOARD_SOUNDS dispatches
	OpRequestChannelInfo      Opcode = 43 // [C] request a CHANNEL_INFO dispatch
)

var opNames = map[Opcode]string{
	OpDispatch:                "DISPATCH",
	OpHeartbeat:               "HEARTBEAT",
	OpIdentify:                "IDENTIFY",
	OpPresenceUpdate:          "PRESENCE_UPDATE",
	OpVoiceStateUpdate:        "VOICE_STATE_UPDATE",
	OpResume:                  "RESUME",
	OpReconnect:               "RECONNECT",
	OpRequestGuildMembers:     "REQUEST_GUILD_MEMBERS",
	OpInvalidSession:          "INVALID_SESSION",
	OpHello:                   "HELLO",
	OpHeartbeatACK:            "HEARTBEAT_ACK",
	OpRequestSoundboardSounds: "REQUEST_SOUNDBOARD_SOUNDS",
	OpRequestChannelInfo:      "REQUEST_CHANNEL_INFO",
}

// String returns the opcode's name, or "OP(n)" for an unknown opcode.
func (op Opcode) String() string {
	if s, ok := opNames[op]; ok {
		return s
	}
	return "OP(" + strconv.Itoa(int(op)) + ")"
}

// Known reports whether op is a documented opcode.
func (op Opcode) Known() bool {
	_, ok := opNames[op]
	return ok
}

// ClientSendable reports whether a client may send op to the server.
func (op Opcode) ClientSendable() bool {
	switch op {
	case OpHeartbeat, OpIdentify, OpPresenceUpdate, OpVoiceStateUpdate, OpResume,
		OpRequestGuildMembers, OpRequestSoundboardSounds, OpRequestChannelInfo:
		return true
	}
	return false
}
