/*
 * fault-util.c: helpers shared by the fault tests (see fault-util.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "fault-util.h"

uint64_t fault_rng_next(struct fault_rng *rng)
{
	/* splitmix64 */
	uint64_t z = (rng->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint64_t fault_rng_below(struct fault_rng *rng, uint64_t n)
{
	return n == 0 ? 0 : fault_rng_next(rng) % n;
}

uint64_t fault_seed(const char *test)
{
	const char *env = getenv("FAULT_SEED");
	struct timespec ts;
	uint64_t seed;

	if (env != NULL && *env != '\0') {
		seed = strtoull(env, NULL, 0);
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		seed = (uint64_t)ts.tv_sec * 1000003ULL ^ (uint64_t)ts.tv_nsec ^
			((uint64_t)getpid() << 32);
	}
	printf("%s: FAULT_SEED=%llu\n", test, (unsigned long long)seed);
	fflush(stdout);
	return seed;
}

double fault_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

char *fault_mkdtemp(const char *name)
{
	const char *base = getenv("FAULT_TMPDIR");
	char *path;

	if (base == NULL || *base == '\0')
		base = ".";
	if (asprintf(&path, "%s/%s-XXXXXX", base, name) < 0)
		FAIL("out of memory");
	if (mkdtemp(path) == NULL)
		FAIL("mkdtemp %s: %s", path, strerror(errno));
	return path;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	if (remove(path) < 0 && errno != ENOENT)
		fprintf(stderr, "remove %s: %s\n", path, strerror(errno));
	return 0;
}

void fault_rmtree(const char *path)
{
	if (getenv("FAULT_KEEP") != NULL)
		return;
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *cleanup_path;
static pid_t cleanup_pid;

static void cleanup_at_exit(void)
{
	if (cleanup_path != NULL && getpid() == cleanup_pid)
		fault_rmtree(cleanup_path);
}

void fault_rmtree_at_exit(const char *path)
{
	if (cleanup_path == NULL)
		atexit(cleanup_at_exit);
	free(cleanup_path);
	cleanup_path = strdup(path);
	cleanup_pid = getpid();
}

uint64_t fault_file_alloc(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return 0;
	return (uint64_t)st.st_blocks * 512;
}

static const char *const words[] = {
	"the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as",
	"was", "with", "be", "by", "on", "not", "this", "are", "or", "from",
	"at", "which", "but", "have", "an", "they", "you", "were", "their",
	"meeting", "report", "please", "attached", "thanks", "regards",
	"project", "invoice", "order", "delivery", "schedule", "tomorrow",
	"customer", "server", "update", "question", "review", "budget",
	"contract", "version", "problem", "solution", "available", "Monday",
	"office", "team", "issue", "document", "account", "payment", "support",
};
#define N_WORDS (sizeof(words) / sizeof(words[0]))

unsigned char *fault_gen_mail(uint64_t key, size_t size, size_t *len_r)
{
	struct fault_rng rng = { key * 0x2545f4914f6cdd1dULL + 0x1234 };
	size_t cap = size + 512, len, col = 0, wl;
	unsigned char *buf = malloc(cap);
	const char *w;
	int n;

	if (buf == NULL)
		FAIL("out of memory");
	n = snprintf((char *)buf, cap,
		     "Return-Path: <sender@example.org>\n"
		     "From: Sender <sender@example.org>\n"
		     "To: user@example.com\n"
		     "Subject: test message %llx\n"
		     "Message-ID: <%llx.%llx@example.org>\n"
		     "Content-Type: text/plain; charset=us-ascii\n\n",
		     (unsigned long long)key, (unsigned long long)key,
		     (unsigned long long)fault_rng_next(&rng));
	len = (size_t)n;
	while (len < size) {
		w = words[fault_rng_below(&rng, N_WORDS)];
		wl = strlen(w);
		if (len + wl + 2 > cap)
			break;
		if (col + wl + 1 > 72) {
			buf[len++] = '\n';
			col = 0;
		} else if (col > 0) {
			buf[len++] = ' ';
			col++;
		}
		memcpy(buf + len, w, wl);
		len += wl;
		col += wl;
	}
	buf[len++] = '\n';
	*len_r = len;
	return buf;
}

void fault_fill_noise(uint64_t key, unsigned char *buf, size_t len)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint64_t x = key * 0x9e3779b97f4a7c15ULL + 1, v;
	size_t i = 0, col = 0;
	unsigned int k;

	while (i < len) {
		/* xorshift64: 8 characters per step */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v = x;
		for (k = 0; k < 8 && i < len; k++, i++) {
			if (++col == 77) {
				buf[i] = '\n';
				col = 0;
			} else {
				buf[i] = (unsigned char)b64[v & 63];
				v >>= 6;
			}
		}
	}
}

struct lmbox_store *fault_open_opts(const char *dir, const struct lmbox_store_opts *opts)
{
	struct lmbox_store *store;
	const char *errmsg = NULL;
	int ret;

	ret = lmbox_store_open(dir, opts, &store, &errmsg);
	if (ret < 0)
		FAIL("open %s (pid %d): %s (%s)", dir, (int)getpid(), lmbox_strerror(ret),
		     errmsg == NULL ? "" : errmsg);
	return store;
}

struct lmbox_store *fault_open(const char *dir, enum lmbox_fsync_mode fsync, int level)
{
	struct lmbox_store_opts opts;

	lmbox_store_opts_init(&opts);
	opts.flags = LMBOX_OPEN_CREATE;
	opts.fsync = fsync;
	opts.compress_level = level;
	return fault_open_opts(dir, &opts);
}

uint32_t fault_folder(struct lmbox_store *store, const char *name)
{
	struct lmbox_folder_info info;
	uint32_t id;
	int ret;

	ret = lmbox_folder_lookup(store, name, &info);
	if (ret == 0)
		return info.id;
	if (ret != LMBOX_ERR_NOTFOUND)
		CHECK_LM(store, ret, "folder lookup");
	ret = lmbox_folder_create(store, name, 0, NULL, &id);
	if (ret == LMBOX_ERR_EXISTS) {
		/* another process won the race */
		CHECK_LM(store, lmbox_folder_lookup(store, name, &info), "folder lookup");
		return info.id;
	}
	CHECK_LM(store, ret, "folder create");
	return id;
}

static void check_report(void *context, const char *line)
{
	if (*(int *)context)
		fprintf(stderr, "check: %s\n", line);
}

int fault_check(struct lmbox_store *store, unsigned int flags, int verbose)
{
	return lmbox_check(store, flags, check_report, &verbose);
}

pid_t fault_fork(void)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		FAIL("fork: %s", strerror(errno));
	return pid;
}

int fault_wait(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			FAIL("waitpid: %s", strerror(errno));
	}
	return status;
}

int fault_exited(int status, int code)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == code;
}

const char *fault_status_str(int status, char *buf, size_t size)
{
	if (WIFEXITED(status))
		snprintf(buf, size, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, size, "status 0x%x", status);
	return buf;
}

void fault_run_child(const char *what, int (*fn)(void *arg), void *arg)
{
	char buf[128];
	pid_t pid = fault_fork();
	int status;

	if (pid == 0)
		_exit(fn(arg));
	status = fault_wait(pid);
	if (!fault_exited(status, 0))
		FAIL("%s: child %s", what, fault_status_str(status, buf, sizeof(buf)));
}

void fault_write_all(int fd, const void *data, size_t size)
{
	const unsigned char *p = data;
	ssize_t n;

	while (size > 0) {
		n = write(fd, p, size);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			FAIL("pipe write: %s", strerror(errno));
		p += n;
		size -= (size_t)n;
	}
}

int fault_read_all(int fd, void *data, size_t size)
{
	unsigned char *p = data;
	size_t got = 0;
	ssize_t n;

	while (got < size) {
		n = read(fd, p + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			FAIL("pipe read: %s", strerror(errno));
		if (n == 0) {
			if (got == 0)
				return 0;
			FAIL("pipe: short record (%zu of %zu bytes)", got, size);
		}
		got += (size_t)n;
	}
	return 1;
}
