/*
 * test-mdbtrim: the disk blocks of LMDB's free pages are given back (hole
 * punching in lmbox.mdb, storage/lmbox-trim.c) without harming anything a
 * reader can see.  20k small messages with long UIDLs grow the metadata,
 * 90% are deleted: lmbox.mdb must then hold far fewer blocks than its
 * size.  Then a reader in another process keeps one snapshot open while
 * this process keeps appending and deleting (trims run meanwhile); the
 * reader re-reads its old snapshot (metadata, UIDL index, bodies) and
 * every message must be byte-exact; it refreshes and checks again, a few
 * times.  lmbox_check must be clean at the end.
 */
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "test-common.h"

#define FIRST 20000
#define ROUNDS 4
#define PER_ROUND 3000
#define MAX_KEY (FIRST + ROUNDS * PER_ROUND)

static uint32_t folder;
static uint32_t uid_of[MAX_KEY];   /* key -> uid, 0 = deleted */

/* The body of message key: a header naming the key, then text. */
static size_t gen(uint32_t key, char *buf, size_t size)
{
	size_t len = (size_t)snprintf(buf, size, "From: trim\nX-Key: %u\n\n", key);
	size_t body = 100 + key * 7919u % 900;

	for (size_t i = 0; i < body && len < size - 1; i++)
		buf[len++] = i % 70 == 69 ? '\n' : (char)('a' + (key + i) % 26);
	return len;
}

static void append_keys(struct lmbox_store *store, uint32_t from, uint32_t to)
{
	struct lmbox_append_opts opts;
	struct lmbox_commit_result res;
	struct lmbox_append *append;
	struct lmbox_txn *txn;
	char buf[2048], uidl[80];
	const char *kw[] = { "$Label1", "some-keyword-to-grow-the-record", NULL };

	lmbox_append_opts_init(&opts);
	opts.uidl = uidl;
	opts.keywords = kw;
	for (uint32_t k = from; k < to; ) {
		uint32_t first = k;

		CHECK_OK(store, lmbox_txn_begin(store, &txn));
		for (; k < to && k < first + 100; k++) {
			size_t len = gen(k, buf, sizeof(buf));

			snprintf(uidl, sizeof(uidl), "k%08u-%060u", k, k);
			CHECK_OK(store, lmbox_append_begin(txn, folder, &opts, &append));
			CHECK_OK(store, lmbox_append_write(append, buf, len));
			CHECK(lmbox_append_finish(&append) == (int)(k - first));
		}
		CHECK_OK(store, lmbox_txn_commit(&txn, &res));
		CHECK(res.uid_count == k - first);
		for (uint32_t i = 0; i < res.uid_count; i++)
			uid_of[first + i] = res.uids[i];
		lmbox_commit_result_free(&res);
	}
}

/* Delete every key in [from, to) with key % 10 != keep, 500 per commit. */
static void delete_keys(struct lmbox_store *store, uint32_t from, uint32_t to, uint32_t keep)
{
	struct lmbox_commit_result res;
	struct lmbox_txn *txn = NULL;
	unsigned int n = 0;

	for (uint32_t k = from; k < to; k++) {
		if (k % 10 == keep || uid_of[k] == 0)
			continue;
		if (txn == NULL)
			CHECK_OK(store, lmbox_txn_begin(store, &txn));
		CHECK_OK(store, lmbox_txn_expunge(txn, folder, uid_of[k]));
		uid_of[k] = 0;
		if (++n % 500 == 0) {
			CHECK_OK(store, lmbox_txn_commit(&txn, &res));
			lmbox_commit_result_free(&res);
			txn = NULL;
		}
	}
	if (txn != NULL) {
		CHECK_OK(store, lmbox_txn_commit(&txn, &res));
		lmbox_commit_result_free(&res);
	}
}

static void mdb_blocks(uint64_t *alloc_r, uint64_t *size_r)
{
	struct stat st;

	CHECK(stat(test_path("trim/lmbox.mdb"), &st) == 0);
	*alloc_r = (uint64_t)st.st_blocks * 512;
	*size_r = (uint64_t)st.st_size;
}

/* Every message of the reader's snapshot, byte-exact, and its UIDL entry;
 * expected: the keys alive at the snapshot.  Bodies expunged since may be
 * NOTFOUND; everything else must match. */
static unsigned int verify(struct lmbox_store *store, struct lmbox_reader *reader,
			   const uint32_t *alive)
{
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta;
	unsigned char *data;
	char want[2048], uidl[80];
	unsigned int count = 0;
	uint32_t key, uid;
	size_t size, len;
	int ret;

	CHECK_OK(store, lmbox_msg_iter_init(reader, folder, 1, &iter));
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
		count++;
		if (sscanf(meta.uidl, "k%08u-", &key) != 1 || key >= MAX_KEY) {
			CHECK(!"bad UIDL");
			continue;
		}
		CHECK(alive[key] == meta.uid);
		snprintf(uidl, sizeof(uidl), "k%08u-%060u", key, key);
		CHECK(strcmp(meta.uidl, uidl) == 0);
		CHECK_OK(store, lmbox_reader_uidl(reader, folder, uidl, &uid));
		CHECK(uid == meta.uid);
		ret = lmbox_body_read_all(store, &meta, &data, &size);
		if (ret == LMBOX_ERR_NOTFOUND)
			continue;
		CHECK_OK(store, ret);
		if (ret < 0)
			continue;
		len = gen(key, want, sizeof(want));
		CHECK(size == len && memcmp(data, want, len) == 0);
		free(data);
	}
	CHECK_OK(store, ret);
	lmbox_msg_iter_deinit(&iter);
	return count;
}

static bool read_all(int fd, void *buf, size_t size)
{
	for (size_t pos = 0; pos < size; ) {
		ssize_t n = read(fd, (char *)buf + pos, size - pos);

		if (n <= 0)
			return false;
		pos += (size_t)n;
	}
	return true;
}

static bool write_all(int fd, const void *buf, size_t size)
{
	for (size_t pos = 0; pos < size; ) {
		ssize_t n = write(fd, (const char *)buf + pos, size - pos);

		if (n <= 0)
			return false;
		pos += (size_t)n;
	}
	return true;
}

static unsigned int count_alive(const uint32_t *alive)
{
	unsigned int n = 0;

	for (uint32_t k = 0; k < MAX_KEY; k++)
		n += alive[k] != 0;
	return n;
}

/* The child: one snapshot held while the parent writes (it tells us
 * through the pipe when it is done with a round), then verified; the
 * alive map of each snapshot comes through the pipe too. */
static int reader_proc(int rfd, int wfd)
{
	struct lmbox_store *store = test_open("trim", 0);
	struct lmbox_reader *reader;
	uint32_t *alive = malloc(sizeof(uid_of));
	char c = 'r';

	CHECK(alive != NULL);
	for (int round = 0; round < ROUNDS; round++) {
		/* the parent sends the alive map, then we take the snapshot
		 * it describes (the parent waits for us to have it) */
		CHECK(read_all(rfd, alive, sizeof(uid_of)));
		if (round == 0)
			CHECK_OK(store, lmbox_reader_begin(store, &reader));
		else
			CHECK_OK(store, lmbox_reader_refresh(reader));
		CHECK(verify(store, reader, alive) == count_alive(alive));
		CHECK(write(wfd, &c, 1) == 1);
		/* the parent writes a lot now; then: the same snapshot again */
		CHECK(read(rfd, &c, 1) == 1);
		CHECK(verify(store, reader, alive) == count_alive(alive));
		CHECK(write(wfd, &c, 1) == 1);
	}
	lmbox_reader_end(&reader);
	lmbox_store_close(&store);
	free(alive);
	return test_failures;
}

int main(void)
{
	struct lmbox_store *store;
	struct lmbox_reader *reader;
	uint64_t alloc, size, alloc_full, size_full;
	int to_child[2], to_parent[2], status;
	uint32_t next = 0;
	pid_t pid;
	char c = 'p';

	test_init();
	store = test_open("trim", LMBOX_OPEN_CREATE);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &folder));
	append_keys(store, 0, FIRST);
	next = FIRST;
	mdb_blocks(&alloc_full, &size_full);
	delete_keys(store, 0, FIRST, 3);
	mdb_blocks(&alloc, &size);
	printf("lmbox.mdb: %llu KiB allocated for %llu KiB after %u messages; "
	       "%llu KiB after deleting 90%%\n", (unsigned long long)alloc_full >> 10,
	       (unsigned long long)size_full >> 10, FIRST, (unsigned long long)alloc >> 10);
	/* the high-water mark stays the file's size; its blocks went back */
	CHECK(size >= size_full);
	CHECK(alloc < size_full / 2);

	CHECK(pipe(to_child) == 0 && pipe(to_parent) == 0);
	pid = fork();
	if (pid == 0) {
		close(to_child[1]);
		close(to_parent[0]);
		_exit(reader_proc(to_child[0], to_parent[1]));
	}
	CHECK(pid > 0);
	close(to_child[0]);
	close(to_parent[1]);
	for (int round = 0; round < ROUNDS; round++) {
		CHECK(write_all(to_child[1], uid_of, sizeof(uid_of)));
		CHECK(read(to_parent[0], &c, 1) == 1);
		/* heavy writing under the reader's snapshot: appends, then
		 * deletions of most of them and of older mail */
		append_keys(store, next, next + PER_ROUND);
		delete_keys(store, next, next + PER_ROUND, 7);
		delete_keys(store, 0, next, (uint32_t)round % 10 == 3 ? 4 : 3);
		next += PER_ROUND;
		/* and what the latest snapshot says, from here */
		CHECK_OK(store, lmbox_reader_begin(store, &reader));
		CHECK(verify(store, reader, uid_of) == count_alive(uid_of));
		lmbox_reader_end(&reader);
		CHECK(write(to_child[1], &c, 1) == 1);
		CHECK(read(to_parent[0], &c, 1) == 1);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	mdb_blocks(&alloc, &size);
	printf("lmbox.mdb at the end: %llu KiB allocated, size %llu KiB, %u messages\n",
	       (unsigned long long)alloc >> 10, (unsigned long long)size >> 10,
	       count_alive(uid_of));
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
	lmbox_store_close(&store);
	return test_exit();
}
