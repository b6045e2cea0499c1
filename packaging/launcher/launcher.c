/* chimera launcher: the first bytes of the one-file executable `dist/chimera`.
 *
 * The file is this program, then a payload (the PyInstaller one-folder build, as one zlib stream),
 * then a fixed-size trailer. On the first run the payload is unpacked once into a runtime
 * directory named after its SHA-256, e.g. ~/.cache/chimera/runtime/0.1.0-3f2a9c.../, and every run
 * after that only checks the directory and exec()s the real program inside it. So the extraction
 * cost is paid once per version, not on every start (PyInstaller's own one-file mode unpacks
 * everything into a new temporary directory on every run).
 *
 * Integrity: the payload's SHA-256 is checked while it is unpacked (a damaged download is refused);
 * the directory is built under a temporary name and renamed into place only when complete, so a
 * killed first run or two first runs at once never leave a half-written runtime behind; a reused
 * directory must hold every file of the manifest at its recorded size, and with
 * CHIMERA_RUNTIME_VERIFY=1 every file's SHA-256 is checked against the manifest too.
 *
 * Environment:
 *   CHIMERA_RUNTIME_DIR      where runtime directories live (default: $XDG_CACHE_HOME/chimera/runtime,
 *                            ~/.cache/chimera/runtime, or $TMPDIR/chimera-runtime-UID)
 *   CHIMERA_RUNTIME_VERIFY=1 check every file's SHA-256 before starting
 *   CHIMERA_LAUNCHER_DEBUG=1 print what the launcher does, with timings, on stderr
 * The program started gets CHIMERA_LAUNCHER=<path of this file>.
 *
 * Format (little-endian), written by packaging/pack.py:
 *   payload  = zlib( "CHPK1\n" entries... 'e' )
 *   entry    = type:u8 ('d' dir, 'f' file, 'l' symlink) path_len:u16 path mode:u32 size:u64 data[size]
 *   trailer  = magic[16] "CHIMERA-LAUNCH-1" payload_offset:u64 payload_size:u64 sha256_hex[64]
 *              runtime_name[96] entry[64]      (256 bytes, at the very end of the file)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>
#ifdef __APPLE__
#include <mach-o/dyld.h>
#endif

#define TRAILER_SIZE 256
#define MAGIC "CHIMERA-LAUNCH-1"
#define MANIFEST ".chimera-runtime/manifest"

/* ---------------------------------------------------------------- SHA-256 (FIPS 180-4) */
typedef struct { uint32_t h[8]; uint64_t n; uint8_t buf[64]; size_t used; } sha256;
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
static void sha_block(sha256 *s, const uint8_t *p) {
    uint32_t w[64], a, b, c, d, e, f, g, h;
    for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3]; e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d; s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}
static void sha_init(sha256 *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv); s->n = 0; s->used = 0;
}
static void sha_update(sha256 *s, const void *data, size_t len) {
    const uint8_t *p = data;
    s->n += len;
    if (s->used) {
        size_t k = 64 - s->used < len ? 64 - s->used : len;
        memcpy(s->buf + s->used, p, k); s->used += k; p += k; len -= k;
        if (s->used < 64) return;
        sha_block(s, s->buf); s->used = 0;
    }
    for (; len >= 64; p += 64, len -= 64) sha_block(s, p);
    memcpy(s->buf, p, len); s->used = len;
}
static void sha_hex(sha256 *s, char out[65]) {
    uint64_t bits = s->n * 8; uint8_t pad = 0x80, z = 0, len[8];
    sha_update(s, &pad, 1);
    while (s->used != 56) sha_update(s, &z, 1);
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha_update(s, len, 8);
    for (int i = 0; i < 8; i++) sprintf(out + 8 * i, "%08x", s->h[i]);
}

/* ---------------------------------------------------------------- helpers */
static int debug;
static double t0;
static double now(void) { struct timeval tv; gettimeofday(&tv, NULL); return tv.tv_sec + tv.tv_usec / 1e6; }
static void say(const char *fmt, ...) {
    if (!debug) return;
    va_list ap; va_start(ap, fmt);
    fprintf(stderr, "chimera-launcher [%7.3f s] ", now() - t0);
    vfprintf(stderr, fmt, ap); fputc('\n', stderr); va_end(ap);
}
static void die(const char *fmt, ...) {
    va_list ap; va_start(ap, fmt);
    fputs("chimera: ", stderr); vfprintf(stderr, fmt, ap); fputc('\n', stderr); va_end(ap);
    exit(127);
}
static uint64_t le(const uint8_t *p, int n) { uint64_t v = 0; for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i]; return v; }
static int mkdirs(const char *path, mode_t mode) {
    char tmp[PATH_MAX]; snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) if (*p == '/') { *p = 0; if (mkdir(tmp, mode) && errno != EEXIST) return -1; *p = '/'; }
    return mkdir(tmp, mode) && errno != EEXIST ? -1 : 0;
}
static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st; (void)flag; (void)f; return remove(p);
}
static void rm_rf(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }
static int safe_rel(const char *p) { /* no absolute paths, no "..", no empty components */
    if (!*p || *p == '/') return 0;
    for (const char *s = p; *s;) {
        const char *e = strchr(s, '/'); size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 2 && s[0] == '.' && s[1] == '.')) return 0;
        s += n + (e ? 1 : 0);
    }
    return 1;
}

/* ---------------------------------------------------------------- reading the payload */
typedef struct {
    FILE *f; uint64_t left; z_stream z; sha256 sha;
    uint8_t in[1 << 16], out[1 << 18]; size_t pos, end; int done;
} reader;
static size_t rd_fill(reader *r) {
    if (r->pos < r->end) return r->end - r->pos;
    if (r->done) return 0;
    r->z.next_out = r->out; r->z.avail_out = sizeof r->out;
    while (r->z.avail_out == sizeof r->out && !r->done) {
        if (r->z.avail_in == 0 && r->left) {
            size_t want = r->left < sizeof r->in ? (size_t)r->left : sizeof r->in;
            size_t got = fread(r->in, 1, want, r->f);
            if (got != want) die("cannot read the payload of this executable");
            sha_update(&r->sha, r->in, got);
            r->left -= got; r->z.next_in = r->in; r->z.avail_in = (uInt)got;
        }
        int rc = inflate(&r->z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) r->done = 1;
        else if (rc != Z_OK) die("the payload of this executable is damaged (zlib error %d); download it again", rc);
        else if (r->z.avail_in == 0 && r->left == 0 && r->z.avail_out == sizeof r->out) die("the payload of this executable is truncated");
    }
    r->pos = 0; r->end = sizeof r->out - r->z.avail_out;
    return r->end;
}
static void rd(reader *r, void *dst, size_t n) {
    uint8_t *d = dst;
    while (n) {
        size_t have = rd_fill(r);
        if (!have) die("the payload of this executable is truncated");
        size_t k = have < n ? have : n;
        memcpy(d, r->out + r->pos, k); r->pos += k; d += k; n -= k;
    }
}

/* Unpacks the payload into dir; returns the hex SHA-256 of the compressed payload. */
static void unpack(FILE *f, uint64_t off, uint64_t size, const char *dir, char sha_out[65]) {
    static reader r;
    memset(&r, 0, sizeof r);
    r.f = f; r.left = size; sha_init(&r.sha);
    if (inflateInit(&r.z) != Z_OK) die("zlib init failed");
    if (fseeko(f, (off_t)off, SEEK_SET)) die("cannot seek in this executable");
    char magic[6]; rd(&r, magic, 6);
    if (memcmp(magic, "CHPK1\n", 6)) die("unknown payload format");
    char path[PATH_MAX], full[PATH_MAX * 2];
    static uint8_t buf[1 << 18];
    for (;;) {
        uint8_t type; rd(&r, &type, 1);
        if (type == 'e') break;
        uint8_t h[2]; rd(&r, h, 2);
        size_t plen = (size_t)le(h, 2);
        if (plen >= sizeof path) die("payload path too long");
        rd(&r, path, plen); path[plen] = 0;
        uint8_t m[12]; rd(&r, m, 12);
        mode_t mode = (mode_t)le(m, 4) & 07777; uint64_t n = le(m + 4, 8);
        if (!safe_rel(path)) die("unsafe path in payload: %s", path);
        snprintf(full, sizeof full, "%s/%s", dir, path);
        if (type == 'd') {
            if (mkdirs(full, 0700)) die("cannot create %s: %s", full, strerror(errno));
            chmod(full, mode | 0700);
        } else if (type == 'f') {
            int fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (fd < 0) die("cannot create %s: %s", full, strerror(errno));
            while (n) {
                size_t k = n < sizeof buf ? (size_t)n : sizeof buf;
                rd(&r, buf, k);
                for (size_t w = 0; w < k;) {
                    ssize_t x = write(fd, buf + w, k - w);
                    if (x < 0) die("cannot write %s: %s", full, strerror(errno));
                    w += (size_t)x;
                }
                n -= k;
            }
            if (fchmod(fd, mode) || close(fd)) die("cannot write %s: %s", full, strerror(errno));
        } else if (type == 'l') {
            char target[PATH_MAX];
            if (n >= sizeof target) die("payload link too long");
            rd(&r, target, (size_t)n); target[n] = 0;
            if (target[0] == '/' || strstr(target, "../../../")) die("unsafe link in payload: %s", path);
            if (symlink(target, full)) die("cannot create link %s: %s", full, strerror(errno));
        } else die("payload damaged (entry type %d)", type);
    }
    /* the payload must have been read to its very end, and its checksum must match */
    if (rd_fill(&r) || r.left) die("payload has trailing data");
    inflateEnd(&r.z);
    sha_hex(&r.sha, sha_out);
}

/* A runtime directory is usable when its manifest lists files that all exist at their sizes
 * (and, with verify, at their SHA-256). Manifest lines: "<sha256> <size> <path>". */
static int runtime_ok(const char *dir, int verify) {
    char mpath[PATH_MAX * 2]; snprintf(mpath, sizeof mpath, "%s/%s", dir, MANIFEST);
    FILE *m = fopen(mpath, "r");
    if (!m) return 0;
    char line[PATH_MAX + 128], full[PATH_MAX * 2]; int ok = 1, count = 0;
    static uint8_t buf[1 << 18];
    while (ok && fgets(line, sizeof line, m)) {
        char hex[65], rel[PATH_MAX]; unsigned long long size;
        line[strcspn(line, "\n")] = 0;
        if (sscanf(line, "%64s %llu %4095[^\n]", hex, &size, rel) != 3) { ok = 0; break; }
        snprintf(full, sizeof full, "%s/%s", dir, rel);
        struct stat st;
        if (lstat(full, &st) || !S_ISREG(st.st_mode) || (unsigned long long)st.st_size != size) { say("stale: %s", rel); ok = 0; break; }
        if (verify) {
            FILE *f = fopen(full, "rb"); sha256 s; sha_init(&s); size_t k; char got[65];
            if (!f) { ok = 0; break; }
            while ((k = fread(buf, 1, sizeof buf, f)) > 0) sha_update(&s, buf, k);
            fclose(f); sha_hex(&s, got);
            if (strcmp(got, hex)) { say("checksum mismatch: %s", rel); ok = 0; }
        }
        count++;
    }
    fclose(m);
    say("runtime %s: %d files %s", ok ? "ok" : "not usable", count, verify ? "verified by SHA-256" : "present at their sizes");
    return ok && count > 0;
}

static void self_path(char *out, size_t n) {
#ifdef __APPLE__
    char tmp[PATH_MAX]; uint32_t sz = sizeof tmp;
    if (_NSGetExecutablePath(tmp, &sz) || !realpath(tmp, out)) die("cannot find this executable");
    (void)n;
#else
    ssize_t k = readlink("/proc/self/exe", out, n - 1);
    if (k < 0) die("cannot find this executable: %s", strerror(errno));
    out[k] = 0;
#endif
}

static void runtime_root(char *out, size_t n) {
    const char *e = getenv("CHIMERA_RUNTIME_DIR"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    if (e && *e) snprintf(out, n, "%s", e);
    else if (x && *x == '/') snprintf(out, n, "%s/chimera/runtime", x);
    else if (h && *h == '/') snprintf(out, n, "%s/.cache/chimera/runtime", h);
    else { const char *t = getenv("TMPDIR"); snprintf(out, n, "%s/chimera-runtime-%u", t && *t ? t : "/tmp", (unsigned)getuid()); }
}

int main(int argc, char **argv) {
    (void)argc;
    const char *dbg = getenv("CHIMERA_LAUNCHER_DEBUG"), *ver = getenv("CHIMERA_RUNTIME_VERIFY");
    debug = dbg && *dbg && *dbg != '0';
    int verify = ver && *ver && *ver != '0';
    t0 = now();
    char self[PATH_MAX]; self_path(self, sizeof self);
    FILE *f = fopen(self, "rb");
    if (!f) die("cannot open %s: %s", self, strerror(errno));
    uint8_t t[TRAILER_SIZE];
    if (fseeko(f, -TRAILER_SIZE, SEEK_END) || fread(t, 1, TRAILER_SIZE, f) != TRAILER_SIZE || memcmp(t, MAGIC, 16))
        die("%s has no payload (was it built by packaging/pack.py?)", self);
    uint64_t off = le(t + 16, 8), size = le(t + 24, 8);
    char sha[65], name[97], entry[65];
    memcpy(sha, t + 32, 64); sha[64] = 0;
    memcpy(name, t + 96, 96); name[96] = 0;
    memcpy(entry, t + 192, 64); entry[64] = 0;
    if (!safe_rel(name) || strchr(name, '/') || !safe_rel(entry)) die("bad trailer");

    char root[PATH_MAX], dir[PATH_MAX * 2], prog[PATH_MAX * 3];
    runtime_root(root, sizeof root);
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    snprintf(prog, sizeof prog, "%s/%s", dir, entry);
    say("%s: payload %llu bytes, runtime %s", self, (unsigned long long)size, dir);

    struct stat st;
    int have = stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == getuid() && runtime_ok(dir, verify);
    if (!have) {
        if (stat(dir, &st) == 0) {  /* damaged or foreign: move it out of the way */
            char old[PATH_MAX * 2 + 32]; snprintf(old, sizeof old, "%s.stale.%ld", dir, (long)getpid());
            if (rename(dir, old) == 0) rm_rf(old);
        }
        if (mkdirs(root, 0700)) die("cannot create %s: %s (set CHIMERA_RUNTIME_DIR to a writable directory)", root, strerror(errno));
        char tmp[PATH_MAX * 2 + 32]; snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
        rm_rf(tmp);
        if (mkdir(tmp, 0700)) die("cannot create %s: %s (set CHIMERA_RUNTIME_DIR to a writable directory)", tmp, strerror(errno));
        say("unpacking into %s", tmp);
        char got[65];
        unpack(f, off, size, tmp, got);
        if (strcmp(got, sha)) { rm_rf(tmp); die("this executable is damaged (payload SHA-256 %s, expected %s); download it again", got, sha); }
        say("unpacked, payload SHA-256 matches");
        if (!runtime_ok(tmp, verify)) { rm_rf(tmp); die("unpacked runtime does not match its manifest"); }
        chmod(tmp, 0755);
        if (rename(tmp, dir)) {  /* another first run won the race: use its directory */
            rm_rf(tmp);
            if (!runtime_ok(dir, 0)) die("cannot install the runtime in %s: %s", dir, strerror(errno));
        }
    }
    fclose(f);
    setenv("CHIMERA_LAUNCHER", self, 1);
    say("exec %s", prog);
    argv[0] = prog;
    execv(prog, argv);
    die("cannot run %s: %s", prog, strerror(errno));
    return 127;
}
