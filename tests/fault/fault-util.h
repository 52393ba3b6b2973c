/*
 * fault-util.h: what the fault and multi-process tests share -- failure
 * macros, a deterministic PRNG and mail generator, scratch directories,
 * fork/pipe/wait helpers, and store shortcuts that fail the test on error.
 * Every test exits 0 (pass), 1 (fail) or 77 (skip).
 */
#ifndef FAULT_UTIL_H
#define FAULT_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "lmbox.h"

#define FAULT_SKIP 77

#define FAIL(...) do { \
	fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
	fprintf(stderr, __VA_ARGS__); \
	fputc('\n', stderr); \
	exit(1); \
} while (0)
#define CHECK(cond, ...) do { if (!(cond)) FAIL(__VA_ARGS__); } while (0)
/* A liblmbox call that must succeed; ret is its return value. */
#define CHECK_LM(store, ret, what) do { int r_ = (ret); if (r_ < 0) \
	FAIL("%s: %s (%s)", what, lmbox_strerror(r_), \
	     (store) == NULL ? "" : lmbox_store_errmsg(store)); } while (0)

struct fault_rng {
	uint64_t s;
};
uint64_t fault_rng_next(struct fault_rng *rng);
/* Uniform-ish in [0, n). */
uint64_t fault_rng_below(struct fault_rng *rng, uint64_t n);
/* A seed from the environment (FAULT_SEED) or the clock; printed so a
 * failing run can be repeated. */
uint64_t fault_seed(const char *test);

double fault_now(void);

/* New directory "<name>-XXXXXX" under $FAULT_TMPDIR or the current
 * directory (the build tree: same file system as a real store would be).
 * malloc()ed path. */
char *fault_mkdtemp(const char *name);
void fault_rmtree(const char *path);
/* Remove path when the test process itself exits, pass or fail (not when
 * a forked child exits); FAULT_KEEP keeps it. */
void fault_rmtree_at_exit(const char *path);
/* Allocated bytes (st_blocks * 512) of a file, 0 if missing. */
uint64_t fault_file_alloc(const char *path);

/* A realistic text message of about size bytes whose every byte follows
 * from key: headers (with the key in Subject and Message-ID) and wrapped
 * words.  malloc()ed; *len_r is the exact length. */
unsigned char *fault_gen_mail(uint64_t key, size_t size, size_t *len_r);
/* Fill buf with base64-alphabet lines from a cheap PRNG: incompressible
 * enough for deflate, fast (GB/s). */
void fault_fill_noise(uint64_t key, unsigned char *buf, size_t len);

/* Open dir (create) with fsync mode and zlib level; fails the test on error. */
struct lmbox_store *fault_open(const char *dir, enum lmbox_fsync_mode fsync, int level);
/* Open dir with opts; a failure ends the test with the store's message. */
struct lmbox_store *fault_open_opts(const char *dir, const struct lmbox_store_opts *opts);
/* Folder id of name, created if missing. */
uint32_t fault_folder(struct lmbox_store *store, const char *name);

/* lmbox_check() with its problem lines on stderr (if verbose); returns
 * its result: problems found, or <0. */
int fault_check(struct lmbox_store *store, unsigned int flags, int verbose);

/* fork() with stdio flushed; fails the test on error. */
pid_t fault_fork(void);
/* waitpid() retrying on EINTR; returns the raw status. */
int fault_wait(pid_t pid);
/* 1 if status is a normal exit with code, else 0; describes it in buf. */
int fault_exited(int status, int code);
const char *fault_status_str(int status, char *buf, size_t size);
/* Fork, run fn(arg) in the child, exit with its result; the parent waits
 * and fails the test (naming what) unless the child exited 0. */
void fault_run_child(const char *what, int (*fn)(void *arg), void *arg);

/* Whole-buffer pipe I/O.  read returns 1 = filled, 0 = EOF at a record
 * boundary; anything else fails the test. */
void fault_write_all(int fd, const void *data, size_t size);
int fault_read_all(int fd, void *data, size_t size);

#endif
