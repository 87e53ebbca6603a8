// The help of every moth-edge command: what it does, what it needs, and examples to copy.
// `moth-edge <command> --help` and `moth-edge help <command>` print these.

export const TOP_HELP = `moth-edge — on-robot media and control runtime

Usage:
  moth-edge [run] [--config FILE]        run; no file and no MOTH_EDGE_CONFIG: the embedded demo
  moth-edge --check-config [--config FILE]
                                         validate the config and exit (0 ok, 2 invalid)
  moth-edge --print-config [--config FILE]
                                         the effective config, every default filled, secrets hidden
  moth-edge config schema                the config's JSON Schema (for editors: completion, validation)
  moth-edge doctor [--config FILE]       check this machine for what the config needs, say what to fix
  moth-edge recordings list|verify|sync|export (--config FILE | --root DIR) [options]
                                         the recordings index; one of --config or --root is REQUIRED
  moth-edge board [--json]               the detected board, its profile and thermal state
  moth-edge devices [--json]             V4L2 cameras, their formats and a suggested driver config
  moth-edge discover [--timeout MS]      WS-Discovery probe for ONVIF cameras on the LAN
  moth-edge help [COMMAND] | --help | --version

Every command has its own help with examples: moth-edge recordings --help, moth-edge doctor --help …
The config file may also be given by the MOTH_EDGE_CONFIG environment variable.
Stops gracefully on SIGINT/SIGTERM (drivers stopped, files flushed) within 5 s.
`;

const RUN = `usage: moth-edge [run] [--config FILE]

Runs the runtime: drivers, stream engine, local pang/WHEP/HTTP server, egress, recordings, control.
--config is optional: without it (and without MOTH_EDGE_CONFIG) the embedded demo runs (a test-pattern
camera and a simulated IMU on channel "robot", recorded to ./data/recordings). A config that does not
validate is refused with every problem named by key path (exit 2).

Examples:
  moth-edge                                   the embedded demo on http://127.0.0.1:8276/
  moth-edge --config /etc/moth-edge/robot.yaml
  MOTH_EDGE_CONFIG=/etc/moth-edge/robot.yaml pm2 start ecosystem.config.js
`;

const CHECK = `usage: moth-edge --check-config [--config FILE]

Validates the config and exits: 0 ok, 2 invalid. Every problem names the key path, the bad value and what
is allowed, and the traps that would only show at run time are refused too (two upstreams on one remote
track, a track reference that names nothing configured, a keepalive longer than its device's timeout,
keys shorter than their minimum). Without --config the embedded default is checked.

Examples:
  moth-edge --check-config --config robot.yaml
  moth-edge --check-config -c robot.yaml && pm2 restart moth-edge
`;

const PRINT = `usage: moth-edge --print-config [--config FILE]

Prints the effective config as JSON: the file with every default filled in, channel names resolved to
their ids where a reference needs one, keys, tokens and passwords shown as "***". This is the reference
of every default: run it with no file to see them all.

Examples:
  moth-edge --print-config                          every default
  moth-edge --print-config -c robot.yaml | jq .egress
`;

const CONFIG = `usage: moth-edge config schema | check | print [--config FILE]

  schema   print the config's JSON Schema (draft 2020-12), made from the same schema that validates it;
           point your editor's YAML language server at it for completion and inline errors
  check    the same as --check-config
  print    the same as --print-config

Examples:
  moth-edge config schema > moth-edge.schema.json
  # first line of robot.yaml, for the YAML language server (VS Code, Neovim …):
  # yaml-language-server: $schema=./moth-edge.schema.json
`;

const DOCTOR = `usage: moth-edge doctor [--config FILE] [--json] [--timeout MS]

Checks this machine for what the runtime (and the config, when given) needs, and says what to fix:
ffmpeg and its H.264 encoders, serial ports and camera devices named in the config, free disk for the
recordings, the clock's synchronisation, the HTTP/RTMP ports free to bind, and every upstream (pang,
WHIP, control, sync target) reachable. Each line is PASS, WARN or FAIL with a fix.
Exit code: 0 nothing failed, 1 something failed, 2 bad usage or an invalid config.
Run it on the robot before "pm2 start", and again when something does not work.

Examples:
  moth-edge doctor                          the machine alone (ffmpeg, disk, clock, default port)
  moth-edge doctor --config robot.yaml      also the devices, ports and upstreams the config names
  moth-edge doctor -c robot.yaml --json     machine-readable, for a fleet check
`;

const RECORDINGS = `usage: moth-edge recordings <list|verify|sync|export> (--config FILE | --root DIR) [options]

The recordings index (SQLite), read-only except for sync. One of --config FILE (its recordings: section;
a relative root is relative to the file) or --root DIR (with --index FILE when the index is elsewhere)
is REQUIRED.

  list     segments, oldest first (--newest-first), filtered
  verify   size + sha256 of every local file against the index, leftovers, --decode; exit 1 on a problem
  sync     one pass of uploads to recordings.sync; --retry-quarantined requeues quarantined segments
  export   one time range of video and sensors on one clock, as MCAP (Foxglove)

Filters: --channel C (id or configured name) --source S --track T --from TIME --to TIME
         --state recording|closed|uploading|synced|quarantined|missing --limit N
TIME: milliseconds since the epoch or an ISO date (2025-06-01T12:00:00Z).
Each subcommand has its own help: moth-edge recordings export --help

Examples:
  moth-edge recordings list --root ./data/recordings --newest-first --limit 10
  moth-edge recordings verify --config robot.yaml
  moth-edge recordings sync --config robot.yaml --retry-quarantined
  moth-edge recordings export --config robot.yaml --from 2025-06-01T12:00:00Z --to 2025-06-01T12:05:00Z --out run.mcap
`;

const RECORDINGS_SUB: Record<string, string> = {
  list: `usage: moth-edge recordings list (--config FILE | --root DIR) [--channel C] [--source S] [--track T]
                                [--from TIME] [--to TIME] [--state S] [--limit N] [--newest-first] [--json]

Lists indexed segments: id, start time, duration, size, sync state, path. Oldest first unless
--newest-first; at most --limit (10000). --channel takes the channel's id or its configured name.

Examples:
  moth-edge recordings list --root ./data/recordings --newest-first --limit 10
  moth-edge recordings list --config robot.yaml --channel robot --track video --state quarantined
  moth-edge recordings list --config robot.yaml --from 2025-06-01T12:00:00Z --json | jq length
`,
  verify: `usage: moth-edge recordings verify (--config FILE | --root DIR) [filters] [--decode]

Reads every closed local segment and compares its size and sha256 with the index; lists files on disk
that the index does not know, and .part files: a segment being recorded now, or one a crash left (the
runtime's recovery closes it at its next start; a .part with no row is BAD).
  --decode   also decode every video segment with ffmpeg (any error or timestamp warning is BAD) and
             walk every record file to its end (CRC of each record)
Prints BAD lines and "N ok, M bad"; exit 1 when anything is bad, 2 on bad usage.

Examples:
  moth-edge recordings verify --root ./data/recordings
  moth-edge recordings verify --root ./data/recordings --decode
  moth-edge recordings verify --config robot.yaml --channel robot --from 2025-06-01T00:00:00Z
`,
  sync: `usage: moth-edge recordings sync --config FILE [--retry-quarantined]

One pass of the uploader with the config's recordings.sync section (--config is required: the target
is there): uploads closed segments, verifies the stored copy (size + sha256), deletes the local file only
when deleteAfterVerify is set. A segment that failed maxAttempts times is quarantined (kept, not
retried); --retry-quarantined puts every quarantined segment back in the queue first.
Stop the running runtime first (pm2 stop moth-edge): the index has one writer.
Exit 1 when an upload failed.

Examples:
  moth-edge recordings sync --config robot.yaml
  moth-edge recordings sync --config robot.yaml --retry-quarantined
`,
  export: `usage: moth-edge recordings export (--config FILE | --root DIR) --from TIME --to TIME --out FILE.mcap [filters]

Writes the recorded video (Foxglove CompressedVideo, H.264) and sensor records (JSON) of a time range to
one MCAP file on one clock; open it in Foxglove Studio. --from, --to and --out are required.

Examples:
  moth-edge recordings export --root ./data/recordings --from 2025-06-01T12:00:00Z --to 2025-06-01T12:05:00Z --out run.mcap
  moth-edge recordings export --config robot.yaml --channel robot --track video --from 1748779200000 --to 1748779500000 --out front.mcap
`,
};

const BOARD = `usage: moth-edge board [--json]

The detected board (Raspberry Pi Zero 2 W/3/4/5, Jetson Nano/Orin Nano, generic), its profile (memory
ceilings, encoder choice, video defaults, thermal step-down) and the current thermal state.

Examples:
  moth-edge board
  moth-edge board --json | jq .profile.memory
`;

const DEVICES = `usage: moth-edge devices [--json]

Lists V4L2 cameras (/dev/video*): name, stable /dev/v4l/by-id path, formats, sizes and frame rates, and a
suggested "v4l2" driver config for each capture node, to paste under channels[].sources[].driver.

Examples:
  moth-edge devices
  moth-edge devices --json
`;

const DISCOVER = `usage: moth-edge discover [--timeout MS] [--json] [--all] [--interface IPv4] [--target HOST:PORT]…

Multicasts an ONVIF WS-Discovery Probe (239.255.255.250:3702) and lists the cameras that answer, with a
suggested "onvif" driver config. --target probes one address by unicast (repeatable); --all lists every
WS-Discovery device, not only ONVIF video transmitters.

Examples:
  moth-edge discover
  moth-edge discover --timeout 5000 --interface 192.168.1.10
  moth-edge discover --target 192.168.1.64:3702 --json
`;

const COMMANDS: Record<string, string> = {
  run: RUN,
  check: CHECK,
  'check-config': CHECK,
  print: PRINT,
  'print-config': PRINT,
  config: CONFIG,
  doctor: DOCTOR,
  recordings: RECORDINGS,
  board: BOARD,
  devices: DEVICES,
  discover: DISCOVER,
};

/** Help of `moth-edge <command> [<sub>]`; undefined for an unknown command. */
export function commandHelp(command: string, sub?: string): string | undefined {
  if (command === 'recordings' && sub && RECORDINGS_SUB[sub]) return RECORDINGS_SUB[sub];
  if (command === 'config' && sub === 'check') return CHECK;
  if (command === 'config' && sub === 'print') return PRINT;
  return COMMANDS[command];
}

export const HELP_COMMANDS = Object.keys(COMMANDS);
export const RECORDINGS_SUBCOMMANDS = Object.keys(RECORDINGS_SUB);
