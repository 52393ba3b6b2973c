/*
 * test-full.c: a full LMDB map and a full disk are temporary errors that
 * lose nothing.
 *
 * Map full: a store opened with map_max = 1 MiB takes messages (long
 * UIDLs, keywords) until a commit fails with LMBOX_ERR_MAPFULL; that commit
 * left nothing behind, everything committed before is intact, check is
 * clean, and the store opened with a larger map_max takes mail again.
 *
 * Disk full (built with -DDISK_FULL as test-diskfull; root only: a private
 * 24 MiB tmpfs in a private mount namespace; skipped otherwise):
 * deliveries fail with LMBOX_ERR_NOSPACE,
 * nothing committed is lost or damaged, a POP3-style deletion of half the
 * mail still commits on the full disk and its space comes back (hole
 * punching), after which deliveries succeed again.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "fault-util.h"

#define MAX_MSGS 4096
#define TMPFS_SIZE "24m"

#ifdef DISK_FULL
/* built as test-diskfull: its own TESTS entry */
static const int disk_full = 1;
#else
static const int disk_full = 0;
#endif
static char *dir;
static uint32_t uids[MAX_MSGS];
static unsigned int ncommitted;

static size_t msg_size(unsigned int i, int big)
{
	return big ? 100000 + (i * 7919u) % 100000 : 200 + (i * 31u) % 300;
}

/* Message i: text, or (big) mostly incompressible noise. */
static unsigned char *gen(unsigned int i, int big, size_t *len_r)
{
	unsigned char *data;
	size_t len = msg_size(i, big);

	if (!big)
		return fault_gen_mail(i, len, len_r);
	data = malloc(len);
	CHECK(data != NULL, "malloc");
	fault_fill_noise(i, data, len);
	memcpy(data, "Subject: full\n\n", 15);
	*len_r = len;
	return data;
}

/* One message per commit until a commit fails (returns that error) or
 * MAX_MSGS are in (returns 0). */
static int fill(struct lmbox_store *store, uint32_t folder, int big)
{
	struct lmbox_append_opts opts;
	struct lmbox_commit_result res;
	struct lmbox_append *append;
	struct lmbox_txn *txn;
	const char *kw[] = { "$Label1", "NonJunk", "some-long-keyword-for-the-map", NULL };
	unsigned char *data;
	char uidl[128];
	size_t len;
	int ret;

	lmbox_append_opts_init(&opts);
	opts.uidl = uidl;
	opts.keywords = kw;
	while (ncommitted < MAX_MSGS) {
		/* 70 characters: the longest UIDL, to fill the map sooner */
		snprintf(uidl, sizeof(uidl), "u%06u-%062u", ncommitted, ncommitted);
		data = gen(ncommitted, big, &len);
		CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
		ret = lmbox_append_begin(txn, folder, &opts, &append);
		if (ret == 0 && (ret = lmbox_append_write(append, data, len)) < 0)
			lmbox_append_abort(&append);
		if (ret == 0)
			ret = lmbox_append_finish(&append);
		free(data);
		if (ret < 0) {
			lmbox_txn_abort(&txn);
			return ret;
		}
		if ((ret = lmbox_txn_commit(&txn, &res)) < 0)
			return ret;
		uids[ncommitted++] = res.uids[0];
		lmbox_commit_result_free(&res);
	}
	return 0;       /* never filled up */
}

/* Everything committed (and not deleted: uids[i] == 0) is there, intact. */
static void verify(struct lmbox_store *store, uint32_t folder, int big)
{
	struct lmbox_folder_info info;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	unsigned char *want, *got;
	size_t want_len, got_len;
	unsigned int i, live = 0;

	CHECK(fault_check(store, LMBOX_CHECK_BODIES, 1) == 0, "check not clean");
	CHECK_LM(store, lmbox_reader_begin(store, &reader), "reader");
	for (i = 0; i < ncommitted; i++) {
		if (uids[i] == 0)
			continue;
		live++;
		CHECK_LM(store, lmbox_reader_msg(reader, folder, uids[i], &meta), "committed message");
		want = gen(i, big, &want_len);
		CHECK_LM(store, lmbox_body_read_all(store, &meta, &got, &got_len), "body");
		CHECK(got_len == want_len && memcmp(got, want, want_len) == 0,
		      "message %u differs", i);
		free(want);
		free(got);
	}
	lmbox_reader_end(&reader);
	CHECK_LM(store, lmbox_folder_get(store, folder, &info), "folder");
	CHECK(info.count == live, "%u messages, %u committed", info.count, live);
}

static struct lmbox_store *open_with(uint64_t map_max)
{
	struct lmbox_store_opts opts;

	lmbox_store_opts_init(&opts);
	opts.flags = LMBOX_OPEN_CREATE;
	opts.fsync = LMBOX_FSYNC_NEVER;
	opts.map_initial = 256 * 1024;
	opts.map_max = map_max;
	return fault_open_opts(dir, &opts);
}

static int mapfull_main(void *arg)
{
	struct lmbox_store *store = open_with(1024 * 1024);
	uint32_t folder = fault_folder(store, "INBOX");
	unsigned int before;
	int ret;

	(void)arg;
	ret = fill(store, folder, 0);
	CHECK(ret == LMBOX_ERR_MAPFULL, "map full reported as %s (%s)", lmbox_strerror(ret),
	      lmbox_store_errmsg(store));
	CHECK(lmbox_error_is_temporary(ret), "MAPFULL is not temporary");
	before = ncommitted;
	verify(store, folder, 0);
	lmbox_store_close(&store);
	printf("map full at 1 MiB after %u messages: LMBOX_ERR_MAPFULL, all intact\n", before);

	/* the operator raises map_max: mail flows again */
	store = open_with(64 * 1024 * 1024);
	ret = fill(store, folder, 0);
	CHECK(ret == 0, "after raising map_max only %u messages fit: %s", ncommitted,
	      lmbox_strerror(ret));
	verify(store, folder, 0);
	lmbox_store_close(&store);
	printf("map_max raised to 64 MiB: %u more messages\n", ncommitted - before);
	return 0;
}

static int diskfull_main(void *arg)
{
	struct lmbox_store *store = open_with(0);
	uint32_t folder = fault_folder(store, "INBOX");
	struct lmbox_commit_result res;
	struct lmbox_txn *txn;
	unsigned int i, full_at, deleted = 0;
	int ret;

	(void)arg;
	ret = fill(store, folder, 1);
	CHECK(ret == LMBOX_ERR_NOSPACE, "disk full reported as %s (%s)",
	      lmbox_strerror(ret), lmbox_store_errmsg(store));
	CHECK(lmbox_error_is_temporary(ret), "NOSPACE is not temporary");
	full_at = ncommitted;
	verify(store, folder, 1);
	printf("disk full after %u messages: LMBOX_ERR_NOSPACE, all intact\n", full_at);

	/* a QUIT deleting every other message, on the full disk */
	CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
	for (i = 0; i < ncommitted; i += 2) {
		CHECK_LM(store, lmbox_txn_expunge(txn, folder, uids[i]), "expunge");
		uids[i] = 0;
		deleted++;
	}
	ret = lmbox_txn_commit(&txn, &res);
	CHECK(ret == 0, "deleting %u messages on a full disk failed: %s (%s)", deleted,
	      lmbox_strerror(ret), lmbox_store_errmsg(store));
	CHECK(res.expunged == deleted, "expunged %u of %u", res.expunged, deleted);
	lmbox_commit_result_free(&res);
	verify(store, folder, 1);

	/* the space came back: deliveries work again */
	ret = fill(store, folder, 1);
	CHECK(ret == LMBOX_ERR_NOSPACE, "second fill ended with %s", lmbox_strerror(ret));
	CHECK(ncommitted - full_at >= deleted / 2,
	      "after deleting %u messages only %u more fit", deleted, ncommitted - full_at);
	verify(store, folder, 1);
	lmbox_store_close(&store);
	printf("deleted %u on the full disk, then %u more deliveries fit\n", deleted,
	       ncommitted - full_at);
	return 0;
}

/* A private tmpfs at dir, in a private mount namespace: it goes away with
 * this (child) process, and the parent never sees it. */
static int mount_tmpfs(void)
{
	if (geteuid() != 0) {
		printf("(not root)\n");
		return -1;
	}
	if (unshare(CLONE_NEWNS) < 0 ||
	    mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("lmbox-test", dir, "tmpfs", 0, "size=" TMPFS_SIZE ",mode=0700") < 0) {
		printf("(cannot mount a tmpfs: %s)\n", strerror(errno));
		return -1;
	}
	return 0;
}

static int diskfull_outer(void *arg)
{
	if (mount_tmpfs() < 0)
		return FAULT_SKIP;
	return diskfull_main(arg);
}

int main(void)
{
	char buf[128];
	pid_t pid;
	int status;

	setvbuf(stdout, NULL, _IOLBF, 0);
	dir = fault_mkdtemp("full");
	fault_rmtree_at_exit(dir);
	if (!disk_full) {
		fault_run_child("map full", mapfull_main, NULL);
	} else {
		pid = fault_fork();
		if (pid == 0)
			_exit(diskfull_outer(NULL));
		status = fault_wait(pid);
		if (fault_exited(status, FAULT_SKIP)) {
			printf("disk full: skipped (needs root and a tmpfs mount)\n");
			return FAULT_SKIP;
		}
		CHECK(fault_exited(status, 0), "disk full: child %s",
		      fault_status_str(status, buf, sizeof(buf)));
	}
	fault_rmtree(dir);
	free(dir);
	return 0;
}
