// What an S3 error means for the sync and what the user should fix. Pure: the S3 target passes the
// SDK's error fields in (its `name` is the S3 error code; HEAD answers carry no body, so their
// status and headers are all there is). No message here ever holds a secret: texts are ours, and
// the server's own message is cut short and passed through redact().
import { isNetworkErrno } from '../../runtime/engine/api.js';
import { SyncFailure } from './target.js';

export interface S3ErrorFacts {
  /** S3 error code (`AccessDenied`, `NoSuchBucket`…) or the SDK's error name. */
  name: string;
  /** HTTP status, when an answer came. */
  status?: number | undefined;
  /** The server's message (may quote the request: redacted and cut). */
  message?: string | undefined;
  /** Region named by the error (AuthorizationHeaderMalformed's <Region>) or x-amz-bucket-region. */
  region?: string | undefined;
  /** RequestTimeTooSkewed's <ServerTime>. */
  serverTime?: string | undefined;
  /** A socket-level code (ECONNREFUSED…) or TimeoutError. */
  errno?: string | undefined;
}

export interface S3Where {
  bucket: string;
  key?: string | undefined;
  region: string;
  endpoint: string;
  op: string;
}

const CREDENTIAL_CODES = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'TokenRefreshRequired', 'InvalidSecurity', 'AccountProblem', 'AllAccessDisabled', 'NotSignedUp', 'InvalidClientTokenId', 'UnrecognizedClientException']);
const DIGEST_CODES = new Set(['BadDigest', 'InvalidDigest', 'XAmzContentSHA256Mismatch', 'XAmzContentChecksumMismatch', 'InvalidChecksum']);
const BUSY_CODES = new Set(['SlowDown', 'InternalError', 'ServiceUnavailable', 'RequestTimeout', 'RequestTimeoutException', 'ThrottlingException', 'Throttling', 'OperationAborted', 'TimeoutError', 'RequestAbortedError', 'ServiceUnavailableException', 'InternalServerError']);
const OBJECT_CODES = new Set(['EntityTooLarge', 'EntityTooSmall', 'KeyTooLongError', 'InvalidObjectName', 'InvalidStorageClass', 'InvalidPart', 'InvalidPartOrder', 'MetadataTooLarge', 'InvalidArgument', 'InvalidRequest', 'MalformedXML', 'PreconditionFailed', 'InvalidObjectState']);

function short(s: string | undefined, redact: (s: string) => string): string {
  if (!s) return '';
  const one = redact(s.replace(/\s+/g, ' ').trim());
  return one.length > 160 ? `${one.slice(0, 157)}…` : one;
}

/** The SyncFailure an S3 error is, with a message that says what to fix. */
export function s3Failure(f: S3ErrorFacts, w: S3Where, redact: (s: string) => string = (s) => s): SyncFailure {
  const ctx = { s3Code: f.name, status: f.status ?? null, op: w.op };
  const server = short(f.message, redact);
  const tail = server ? ` (server: ${server})` : '';
  const name = f.name;
  if (f.errno && isNetworkErrno(f.errno)) return new SyncFailure('SYNC_NETWORK', `${w.op}: ${f.errno} — ${w.endpoint} unreachable`, 'network', 'target', ctx);
  if (name === 'RequestTimeTooSkewed') {
    const st = f.serverTime ? ` server time ${f.serverTime},` : '';
    return new SyncFailure(
      'S3_CLOCK_SKEW',
      `${w.op} refused: RequestTimeTooSkewed —${st} robot time ${new Date().toISOString()}: the robot's clock is off by more than 15 minutes; fix its time (NTP: timedatectl set-ntp true, or an RTC) and the sync resumes by itself`,
      'refused',
      'target',
      ctx,
    );
  }
  if (name === 'AuthorizationHeaderMalformed' || name === 'PermanentRedirect' || name === 'IllegalLocationConstraintException' || (f.status === 301 && (name === '301' || name === 'MovedPermanently' || name === 'Unknown'))) {
    const hint = f.region && f.region !== w.region ? `the bucket is in region ${f.region}: set recordings.sync.target.region: ${f.region}` : `the bucket is served from another region or endpoint than ${w.region} / ${w.endpoint}: check region and endpoint`;
    return new SyncFailure('S3_WRONG_REGION', `${w.op} refused: ${name} — ${hint}${tail}`, 'refused', 'target', ctx);
  }
  if (name === 'NoSuchBucket') {
    return new SyncFailure('S3_NO_BUCKET', `${w.op}: bucket "${w.bucket}" does not exist at ${w.endpoint} — create it or fix recordings.sync.target.bucket`, 'refused', 'target', ctx);
  }
  if (CREDENTIAL_CODES.has(name)) {
    const what =
      name === 'InvalidAccessKeyId' || name === 'InvalidClientTokenId'
        ? 'the access key id is not known to this endpoint'
        : name === 'SignatureDoesNotMatch'
          ? 'the secret key does not belong to the access key id (or the request was altered on the way)'
          : name === 'ExpiredToken' || name === 'TokenRefreshRequired'
            ? 'the session token expired'
            : 'the credentials are not accepted';
    return new SyncFailure('S3_CREDENTIALS', `${w.op} refused: ${name} — ${what}: fix recordings.sync.target.credentials (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)`, 'refused', 'target', ctx);
  }
  if (name === 'CredentialsProviderError' || name === 'ProviderError') {
    return new SyncFailure(
      'S3_NO_CREDENTIALS',
      `no S3 credentials found — set recordings.sync.target.credentials, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials${tail}`,
      'refused',
      'target',
      ctx,
    );
  }
  if (name === 'AccessDenied' || (f.status === 403 && (name === 'Forbidden' || name === '403' || name === 'Unknown'))) {
    const key = w.key ? ` on ${w.key}` : '';
    return new SyncFailure(
      'S3_ACCESS_DENIED',
      `${w.op} refused: AccessDenied${key} — the credentials need s3:PutObject and s3:GetObject (for the HEAD check) on arn:aws:s3:::${w.bucket}/<prefix>*, and s3:AbortMultipartUpload + s3:ListMultipartUploadParts for multipart${tail}`,
      'refused',
      'object',
      ctx,
    );
  }
  if (DIGEST_CODES.has(name)) {
    return new SyncFailure('S3_BAD_DIGEST', `${w.op} refused: ${name} — the target received other bytes than were sent (corrupted on the way)${tail}`, 'refused', 'object', ctx);
  }
  if (name === 'NoSuchUpload') return new SyncFailure('S3_NO_SUCH_UPLOAD', `${w.op}: the multipart upload is gone (aborted or expired on the target)`, 'refused', 'object', ctx);
  if (name === 'NotFound' || name === 'NoSuchKey' || (f.status === 404 && !name.startsWith('NoSuch'))) {
    return new SyncFailure('S3_NOT_FOUND', `${w.op}: ${w.key ?? 'object'} not found`, 'refused', 'object', ctx);
  }
  if (name === 'NotImplemented' || name === 'MethodNotAllowed' || f.status === 501 || f.status === 405) {
    return new SyncFailure('S3_UNSUPPORTED', `${w.op}: not supported by this S3 server (${name})`, 'refused', 'object', ctx);
  }
  if (BUSY_CODES.has(name) || (f.status !== undefined && (f.status >= 500 || f.status === 408 || f.status === 429))) {
    return new SyncFailure('SYNC_NETWORK', `${w.op}: ${name}${f.status ? ` (${f.status})` : ''} — the target is busy or down; retrying${tail}`, 'network', 'target', ctx);
  }
  if (OBJECT_CODES.has(name) || (f.status !== undefined && f.status >= 400 && f.status < 500)) {
    return new SyncFailure('S3_REFUSED', `${w.op} refused: ${name}${f.status ? ` (${f.status})` : ''}${tail}`, 'refused', 'object', ctx);
  }
  // no answer we understand (a socket error the SDK wrapped, an aborted request): the network
  return new SyncFailure('SYNC_NETWORK', `${w.op}: ${name}${f.errno ? ` ${f.errno}` : ''}${tail}`, 'network', 'target', ctx);
}
