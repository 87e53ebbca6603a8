// One RTMP server connection as a pure state machine: bytes from the socket in (`push`), bytes to
// send and publish/video events out through the handler. Handles the handshake, chunk streams,
// protocol control, and the AMF0 commands a publisher sends: connect, releaseStream, FCPublish,
// createStream, publish, FCUnpublish, deleteStream. Playing is refused: this is an ingest.

import { Amf0Error, decodeAmf0, encodeAmf0, type Amf0Object, type Amf0Value } from './amf0.js';
import { ChunkError, ChunkReader, ChunkWriter, MSG, u32, userControl, USER_CONTROL, type RtmpMessage } from './chunk.js';
import { HandshakeError, ServerHandshake } from './handshake.js';

export interface PublishRequest {
  /** Application from connect (`live` in rtmp://host/live/key). */
  app: string;
  /** The publishing name (the stream key), without any `?query`. A secret: never log it. */
  name: string;
  /** Message stream id from createStream. */
  streamId: number;
}

export type PublishDecision = { ok: true } | { ok: false; code: string; description: string };

export interface RtmpSessionHandler {
  send(bytes: Buffer): void;
  /** Synchronous: the decision is sent back immediately. */
  onPublish(req: PublishRequest): PublishDecision;
  /** One FLV video tag body (type 9) of the published stream, with its RTMP timestamp in ms. */
  onVideo(timestamp: number, body: Buffer): void;
  onAudio?(timestamp: number, body: Buffer): void;
  onMetadata?(meta: Amf0Object): void;
  /** The publisher ended (FCUnpublish/deleteStream/closeStream). */
  onUnpublish(): void;
  /** The session must be closed (protocol error, refusal). `error` is set for protocol errors. */
  onClose(reason: string, error?: Error & { code: string }): void;
}

export interface RtmpSessionOptions {
  /** Chunk size we send with. 4096 as ffmpeg/nginx-rtmp: fewer headers for large video. */
  outChunkSize?: number;
  maxMessageBytes?: number;
  random?: (n: number) => Buffer;
  nowMs?: () => number;
}

export interface RtmpSessionStats {
  state: string;
  bytesIn: number;
  bytesOut: number;
  messagesIn: number;
  commands: number;
  videoMessages: number;
  audioMessages: number;
  ignoredMessages: number;
}

// 5 MB: the window after which the peer expects an Acknowledgement (nginx-rtmp uses 5000000).
const WINDOW_ACK_SIZE = 5_000_000;
// createStream calls per connection: a publisher needs one; a few allow a retry.
const MAX_STREAMS = 4;
const PRE_PUBLISH_MAX_MESSAGE = 64 * 1024;

export class RtmpServerSession {
  private readonly hs: ServerHandshake;
  private readonly reader: ChunkReader;
  private readonly writer = new ChunkWriter(false);
  private state: 'handshake' | 'connected' | 'publishing' | 'closed' = 'handshake';
  private app = '';
  private connected = false;
  private nextStreamId = 1;
  private publishStreamId = -1;
  private peerWindow = 0;
  private bytesSinceAck = 0;
  private totalIn = 0;
  readonly counters: RtmpSessionStats = {
    state: 'handshake',
    bytesIn: 0,
    bytesOut: 0,
    messagesIn: 0,
    commands: 0,
    videoMessages: 0,
    audioMessages: 0,
    ignoredMessages: 0,
  };

  constructor(private readonly h: RtmpSessionHandler, private readonly opts: RtmpSessionOptions = {}) {
    const random = opts.random ?? ((n: number) => Buffer.alloc(n, 0x5a));
    this.hs = new ServerHandshake(random, opts.nowMs ?? (() => Date.now()));
    // Until a publish is accepted only commands flow: 64 KB is far above any connect/publish, and
    // an unauthenticated peer cannot make us hold megabytes.
    this.reader = new ChunkReader({ maxMessageBytes: PRE_PUBLISH_MAX_MESSAGE, maxPendingBytes: 2 * PRE_PUBLISH_MAX_MESSAGE });
  }

  get appName(): string {
    return this.app;
  }

  get isPublishing(): boolean {
    return this.state === 'publishing';
  }

  get isClosed(): boolean {
    return this.state === 'closed';
  }

  /** Feed socket bytes. Never throws: protocol errors end the session through onClose. */
  push(input: Buffer): void {
    if (this.state === 'closed') return;
    this.counters.bytesIn += input.length;
    this.totalIn += input.length;
    try {
      let data = input;
      if (this.state === 'handshake') {
        const step = this.hs.push(input);
        if (step.state === 'need-more') return;
        if (step.state === 'reply') this.send(step.send);
        if (!this.hs.done) return;
        this.setState('connected');
        data = step.rest;
        if (data.length === 0) return;
      }
      this.ackIfDue(input.length);
      for (const msg of this.reader.push(data)) {
        this.onMessage(msg);
        if (this.isClosed) return;
      }
    } catch (err) {
      if (err instanceof ChunkError || err instanceof HandshakeError || err instanceof Amf0Error) {
        this.close('protocol-error', err);
        return;
      }
      throw err;
    }
  }

  /** Stop without a peer-visible goodbye (the shell closes the socket). */
  close(reason: string, error?: Error & { code: string }): void {
    if (this.state === 'closed') return;
    const wasPublishing = this.state === 'publishing';
    this.setState('closed');
    if (wasPublishing) this.h.onUnpublish();
    this.h.onClose(reason, error);
  }

  stats(): RtmpSessionStats & { chunks: number; inChunkSize: number } {
    return { ...this.counters, chunks: this.reader.counters.chunks, inChunkSize: this.reader.inChunkSize };
  }

  private setState(s: 'handshake' | 'connected' | 'publishing' | 'closed'): void {
    this.state = s;
    this.counters.state = s;
  }

  private send(b: Buffer): void {
    this.counters.bytesOut += b.length;
    this.h.send(b);
  }

  private sendMsg(csid: number, typeId: number, streamId: number, payload: Buffer, timestamp = 0): void {
    this.send(this.writer.encode({ csid, typeId, streamId, timestamp, payload }));
  }

  private sendCommand(streamId: number, ...values: Amf0Value[]): void {
    // csid 3 for connection-level commands, 5 for stream-level (as librtmp/ffmpeg)
    this.sendMsg(streamId === 0 ? 3 : 5, MSG.commandAmf0, streamId, encodeAmf0(...values));
  }

  private ackIfDue(n: number): void {
    if (this.peerWindow <= 0) return;
    this.bytesSinceAck += n;
    if (this.bytesSinceAck >= this.peerWindow) {
      this.bytesSinceAck = 0;
      this.sendMsg(2, MSG.ack, 0, u32(this.totalIn));
    }
  }

  private onMessage(msg: RtmpMessage): void {
    this.counters.messagesIn++;
    switch (msg.typeId) {
      case MSG.setChunkSize:
      case MSG.abort:
      case MSG.ack:
      case MSG.setPeerBandwidth:
        return; // chunk size/abort already applied by the reader; the others need no answer
      case MSG.windowAckSize:
        if (msg.payload.length >= 4) this.peerWindow = msg.payload.readUInt32BE(0);
        return;
      case MSG.userControl:
        if (msg.payload.length >= 6 && msg.payload.readUInt16BE(0) === USER_CONTROL.pingRequest) {
          this.sendMsg(2, MSG.userControl, 0, userControl(USER_CONTROL.pingResponse, msg.payload.readUInt32BE(2)));
        }
        return;
      case MSG.commandAmf3:
        // AMF3 command messages start with a 0 byte, then carry AMF0 values.
        this.onCommand(msg, msg.payload.subarray(1));
        return;
      case MSG.commandAmf0:
        this.onCommand(msg, msg.payload);
        return;
      case MSG.dataAmf0:
      case MSG.dataAmf3:
        this.onData(msg.typeId === MSG.dataAmf3 ? msg.payload.subarray(1) : msg.payload, msg);
        return;
      case MSG.video:
        if (this.state === 'publishing' && msg.streamId === this.publishStreamId) {
          this.counters.videoMessages++;
          this.h.onVideo(msg.timestamp, msg.payload);
        } else this.counters.ignoredMessages++;
        return;
      case MSG.audio:
        if (this.state === 'publishing' && msg.streamId === this.publishStreamId) {
          this.counters.audioMessages++;
          this.h.onAudio?.(msg.timestamp, msg.payload);
        } else this.counters.ignoredMessages++;
        return;
      default:
        this.counters.ignoredMessages++; // shared objects, aggregate: not used by publishers
    }
  }

  private onData(payload: Buffer, msg: RtmpMessage): void {
    if (this.state !== 'publishing' || msg.streamId !== this.publishStreamId) {
      this.counters.ignoredMessages++;
      return;
    }
    const vals = decodeAmf0(payload);
    // ffmpeg/OBS send "@setDataFrame", "onMetaData", {…}; some encoders send "onMetaData", {…}
    let i = 0;
    if (vals[i] === '@setDataFrame') i++;
    if (vals[i] === 'onMetaData' && vals[i + 1] && typeof vals[i + 1] === 'object' && !Array.isArray(vals[i + 1]) && !(vals[i + 1] instanceof Date)) {
      this.h.onMetadata?.(vals[i + 1] as Amf0Object);
    }
  }

  private onCommand(msg: RtmpMessage, payload: Buffer): void {
    this.counters.commands++;
    const vals = decodeAmf0(payload);
    const name = vals[0];
    const txn = typeof vals[1] === 'number' ? vals[1] : 0;
    if (typeof name !== 'string') throw new Amf0Error('command name is not a string', 0);
    switch (name) {
      case 'connect': {
        const obj = vals[2];
        const app = obj && typeof obj === 'object' && !Array.isArray(obj) && !(obj instanceof Date) ? (obj as Amf0Object)['app'] : undefined;
        // "live/" and "live?x=y" both mean app "live"
        this.app = typeof app === 'string' ? app.split('?', 1)[0]!.replace(/\/+$/, '') : '';
        this.connected = true;
        this.sendMsg(2, MSG.windowAckSize, 0, u32(WINDOW_ACK_SIZE));
        const bw = Buffer.alloc(5);
        bw.writeUInt32BE(WINDOW_ACK_SIZE, 0);
        bw[4] = 2; // dynamic
        this.sendMsg(2, MSG.setPeerBandwidth, 0, bw);
        this.sendMsg(2, MSG.setChunkSize, 0, u32(this.opts.outChunkSize ?? 4096));
        this.sendCommand(
          0,
          '_result',
          txn,
          { fmsVer: 'FMS/3,0,1,123', capabilities: 31 },
          { level: 'status', code: 'NetConnection.Connect.Success', description: 'Connection succeeded.', objectEncoding: 0 },
        );
        return;
      }
      case 'releaseStream':
      case 'FCPublish':
      case 'FCUnpublish':
      case 'deleteStream':
      case 'closeStream': {
        if (name === 'FCPublish') {
          // SRS/Sol order: _result first, then onFCPublish (the key is not echoed)
          this.sendCommand(0, '_result', txn, null, undefined);
          this.sendCommand(0, 'onFCPublish', 0, null, { code: 'NetStream.Publish.Start', description: 'FCPublish' });
        } else if (name === 'releaseStream' && txn !== 0) {
          this.sendCommand(0, '_result', txn, null, undefined);
        }
        if ((name === 'FCUnpublish' || name === 'deleteStream' || name === 'closeStream') && this.state === 'publishing') {
          this.setState('connected');
          this.publishStreamId = -1;
          this.h.onUnpublish();
        }
        return;
      }
      case 'createStream': {
        if (!this.connected) return this.close('command-before-connect');
        if (this.nextStreamId > MAX_STREAMS) {
          this.sendCommand(0, '_error', txn, null, { level: 'error', code: 'NetConnection.Call.Failed', description: 'too many streams' });
          return;
        }
        this.sendCommand(0, '_result', txn, null, this.nextStreamId++);
        return;
      }
      case 'publish': {
        if (!this.connected) return this.close('command-before-connect');
        const streamId = msg.streamId;
        const raw = vals[3];
        const nameStr = typeof raw === 'string' ? raw.split('?', 1)[0]! : '';
        if (this.state === 'publishing') {
          this.sendStatus(streamId, 'error', 'NetStream.Publish.BadName', 'already publishing');
          return;
        }
        if (streamId < 1 || streamId >= this.nextStreamId) {
          this.sendStatus(streamId, 'error', 'NetStream.Publish.Failed', 'publish on a stream that was not created');
          return this.close('bad-stream-id');
        }
        const decision = nameStr ? this.h.onPublish({ app: this.app, name: nameStr, streamId }) : { ok: false as const, code: 'NetStream.Publish.BadName', description: 'empty stream key' };
        if (!decision.ok) {
          this.sendStatus(streamId, 'error', decision.code, decision.description);
          return this.close('publish-refused');
        }
        this.publishStreamId = streamId;
        this.setState('publishing');
        // one video message at a time plus interleaved audio/control: a message and a bit
        const max = this.opts.maxMessageBytes ?? 4 * 1024 * 1024;
        this.reader.setLimits(max, max + 1024 * 1024);
        this.sendMsg(2, MSG.userControl, 0, userControl(USER_CONTROL.streamBegin, streamId));
        this.sendStatus(streamId, 'status', 'NetStream.Publish.Start', 'Start publishing');
        return;
      }
      case 'play':
      case 'play2':
        this.sendStatus(msg.streamId, 'error', 'NetStream.Play.Failed', 'this endpoint only takes publishers');
        return this.close('play-refused');
      case '_result':
      case '_error':
      case 'onStatus':
      case 'getStreamLength':
      case '_checkbw':
        return;
      default:
        // Unknown calls with a transaction id get an _error so the client does not wait forever.
        if (txn !== 0) this.sendCommand(0, '_error', txn, null, { level: 'error', code: 'NetConnection.Call.Failed', description: 'unknown command' });
    }
  }

  private sendStatus(streamId: number, level: string, code: string, description: string): void {
    this.sendCommand(streamId, 'onStatus', 0, null, { level, code, description });
  }
}
