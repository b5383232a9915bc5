package coordapi

// Command is a typed order sent down a node's push channel. There is no
// way to send anything else: the channel carries these and nothing a node
// would evaluate.
type Command struct {
	// ID identifies the command in acknowledgements and logs; the
	// coordinator sets it.
	ID string `json:"id"`
	// Type is one of the Cmd constants.
	Type string `json:"type"`
	// Shard is CmdRestartShard's shard.
	Shard *int `json:"shard,omitempty"`
	// Capacity is CmdConfig's new capacity (0 = no limit).
	Capacity *int `json:"capacity,omitempty"`
}

// Command types.
const (
	CmdRestartShard = "restart_shard" // close and RESUME one shard
	CmdRespawnAll   = "respawn_all"   // close and RESUME every shard of the node
	CmdDrain        = "drain"         // move every shard away; take no new ones
	CmdUndrain      = "undrain"       // take shards again
	CmdConfig       = "config"        // change the node's capacity
	// CmdBeat asks the node to heartbeat now (a reshard's step, a shard
	// come free). Only the coordinator sends it.
	CmdBeat = "beat"
)

// CommandAck is a node's answer to a command.
type CommandAck struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// CommandRequest is the body of POST /v1/commands.
type CommandRequest struct {
	// Target is a node ID, or "*" for every connected node.
	Target string `json:"target"`
	Command
}

// CommandResult is the answer of POST /v1/commands.
type CommandResult struct {
	ID string `json:"id"`
	// Delivered are the nodes whose push channel took the command.
	Delivered []string `json:"delivered"`
}
