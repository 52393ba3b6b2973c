/*
 * test-churn.c: space of deleted mail comes back by itself.  Three rounds
 * of: deliver 20k realistic messages (a few KB, one commit each), delete
 * 90% of them at random (POP3 QUITs of 500 DELEs).  After each round, with
 * no compaction, what du counts (allocated blocks of the segment files and
 * lmbox.mdb) must stay within 1.5x of the live compressed bytes.
 */
#include <string.h>
#include <unistd.h>
#include <dirent.h>

#include "fault-util.h"

#define ROUNDS 3
#define PER_ROUND 20000
#define KEEP_PERCENT 10
#define DELE_PER_QUIT 500
#define MAX_RATIO 1.5

static char *dir;
static uint64_t seed;
static unsigned int round_no;

static uint64_t seg_alloc(void)
{
	char path[4096];
	struct dirent *d;
	uint64_t total = 0;
	DIR *dh;

	snprintf(path, sizeof(path), "%s/seg", dir);
	if ((dh = opendir(path)) == NULL)
		return 0;
	while ((d = readdir(dh)) != NULL) {
		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/seg/%s", dir, d->d_name);
		total += fault_file_alloc(path);
	}
	closedir(dh);
	return total;
}

static int round_main(void *arg)
{
	struct lmbox_store *store = fault_open(dir, LMBOX_FSYNC_NEVER, 6);
	uint32_t folder = fault_folder(store, "INBOX"), *uids, i, j, tmp;
	struct fault_rng rng = { seed + round_no };
	struct lmbox_commit_result res;
	struct lmbox_append *append;
	struct lmbox_txn *txn;
	unsigned char *data;
	size_t len;

	(void)arg;
	uids = malloc(PER_ROUND * sizeof(*uids));
	CHECK(uids != NULL, "malloc");
	for (i = 0; i < PER_ROUND; i++) {
		uint64_t key = (uint64_t)round_no * PER_ROUND + i;
		/* mostly 1-6 KB, some 10-40 KB */
		size_t size = fault_rng_below(&rng, 10) == 0 ?
			10000 + fault_rng_below(&rng, 30000) :
			1000 + fault_rng_below(&rng, 5000);

		data = fault_gen_mail(key, size, &len);
		CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
		CHECK_LM(store, lmbox_append_begin(txn, folder, NULL, &append), "append");
		CHECK_LM(store, lmbox_append_write(append, data, len), "write");
		CHECK_LM(store, lmbox_append_finish(&append), "finish");
		CHECK_LM(store, lmbox_txn_commit(&txn, &res), "commit");
		uids[i] = res.uids[0];
		lmbox_commit_result_free(&res);
		free(data);
	}
	/* shuffle, then delete all but KEEP_PERCENT */
	for (i = PER_ROUND - 1; i > 0; i--) {
		j = (uint32_t)fault_rng_below(&rng, i + 1);
		tmp = uids[i];
		uids[i] = uids[j];
		uids[j] = tmp;
	}
	for (i = 0; i < PER_ROUND * (100 - KEEP_PERCENT) / 100; i += DELE_PER_QUIT) {
		CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
		for (j = i; j < i + DELE_PER_QUIT && j < PER_ROUND * (100 - KEEP_PERCENT) / 100; j++)
			CHECK_LM(store, lmbox_txn_expunge(txn, folder, uids[j]), "expunge");
		CHECK_LM(store, lmbox_txn_commit(&txn, &res), "commit expunges");
		CHECK(res.expunged == j - i, "expunged %u of %u", res.expunged, j - i);
		lmbox_commit_result_free(&res);
	}
	free(uids);
	lmbox_store_close(&store);
	return 0;
}

struct measure {
	uint64_t live_stored, live_count, seg, mdb, pending, segments;
	uint64_t live_blocks;   /* 4 KiB blocks holding live bytes: the most
	                           any hole punching can give back leaves these */
};

#define BLOCK 4096
#define MAX_SEGS 64
#define MAX_SEG_BLOCKS (1u << 20)

static uint8_t *block_maps[MAX_SEGS];

static void mark_blocks(const struct lmbox_msg_meta *meta, uint64_t *count)
{
	uint64_t b, first = meta->seg_offset / BLOCK,
		last = (meta->seg_offset + meta->stored_size - 1) / BLOCK;
	uint8_t *map;

	if (meta->seg_id >= MAX_SEGS || last >= MAX_SEG_BLOCKS || meta->stored_size == 0)
		return;
	if ((map = block_maps[meta->seg_id]) == NULL) {
		map = block_maps[meta->seg_id] = calloc(MAX_SEG_BLOCKS / 8, 1);
		CHECK(map != NULL, "calloc");
	}
	for (b = first; b <= last; b++) {
		if ((map[b / 8] & (1u << (b % 8))) == 0) {
			map[b / 8] |= (uint8_t)(1u << (b % 8));
			(*count)++;
		}
	}
}

static int measure_main(void *arg)
{
	int fd = *(int *)arg;
	struct lmbox_store *store = fault_open(dir, LMBOX_FSYNC_NEVER, 6);
	struct lmbox_store_stat st;
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta;
	struct lmbox_folder_info info;
	struct measure m;
	uint64_t sum = 0;
	char path[4096];
	int ret;

	memset(&m, 0, sizeof(m));
	CHECK_LM(store, lmbox_store_stat(store, &st), "stat");
	CHECK_LM(store, lmbox_folder_lookup(store, "INBOX", &info), "lookup");
	CHECK_LM(store, lmbox_reader_begin(store, &reader), "reader");
	CHECK_LM(store, lmbox_msg_iter_init(reader, info.id, 1, &iter), "iter");
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
		sum += meta.stored_size;
		m.live_count++;
		mark_blocks(&meta, &m.live_blocks);
	}
	CHECK_LM(store, ret, "iter");
	lmbox_msg_iter_deinit(&iter);
	lmbox_reader_end(&reader);
	CHECK(sum == st.stored_bytes, "stat says %llu stored bytes, messages sum to %llu",
	      (unsigned long long)st.stored_bytes, (unsigned long long)sum);
	CHECK(fault_check(store, 0, 1) == 0, "lmbox_check not clean");
	lmbox_store_close(&store);
	m.live_stored = sum;
	m.pending = st.reclaim_pending;
	m.segments = st.segment_count;
	m.seg = seg_alloc();
	snprintf(path, sizeof(path), "%s/lmbox.mdb", dir);
	m.mdb = fault_file_alloc(path);
	fault_write_all(fd, &m, sizeof(m));
	return 0;
}

static int compact_main(void *arg)
{
	struct lmbox_store *store = fault_open(dir, LMBOX_FSYNC_NEVER, 6);
	uint64_t freed = 0;

	(void)arg;
	CHECK_LM(store, lmbox_compact(store, &freed), "compact");
	lmbox_store_close(&store);
	return 0;
}

static void measure(struct measure *m)
{
	int fds[2];

	CHECK(pipe(fds) == 0, "pipe");
	fault_run_child("measure", measure_main, &fds[1]);
	close(fds[1]);
	CHECK(fault_read_all(fds[0], m, sizeof(*m)) == 1, "no measurement");
	close(fds[0]);
}

int main(void)
{
	struct measure m;
	double ratio, worst = 0, t0 = fault_now();

	setvbuf(stdout, NULL, _IOLBF, 0);
	seed = fault_seed("test-churn");
	dir = fault_mkdtemp("churn");
	fault_rmtree_at_exit(dir);
	for (round_no = 0; round_no < ROUNDS; round_no++) {
		fault_run_child("churn round", round_main, NULL);
		measure(&m);
		ratio = (double)(m.seg + m.mdb) / (double)m.live_stored;
		if (ratio > worst)
			worst = ratio;
		printf("round %u: %llu live messages, %llu KiB live compressed; on disk "
		       "%llu KiB (segments %llu KiB in %llu files, lmbox.mdb %llu KiB); "
		       "ratio %.2f; reclaim pending %llu; live data in %llu KiB of 4 KiB "
		       "blocks (ideal punching: ratio %.2f) (%.1f s)\n", round_no + 1,
		       (unsigned long long)m.live_count,
		       (unsigned long long)(m.live_stored >> 10),
		       (unsigned long long)((m.seg + m.mdb) >> 10),
		       (unsigned long long)(m.seg >> 10), (unsigned long long)m.segments,
		       (unsigned long long)(m.mdb >> 10), ratio,
		       (unsigned long long)m.pending,
		       (unsigned long long)(m.live_blocks * BLOCK >> 10),
		       (double)(m.live_blocks * BLOCK + m.mdb) / (double)m.live_stored,
		       fault_now() - t0);
	}
	/* For the record only (the limit is about no compaction): what an
	 * explicit lmbox compact brings it down to. */
	fault_run_child("compact", compact_main, NULL);
	measure(&m);
	printf("after lmbox_compact(): on disk %llu KiB (segments %llu KiB, lmbox.mdb "
	       "%llu KiB) for %llu KiB live: ratio %.2f\n",
	       (unsigned long long)((m.seg + m.mdb) >> 10), (unsigned long long)(m.seg >> 10),
	       (unsigned long long)(m.mdb >> 10), (unsigned long long)(m.live_stored >> 10),
	       (double)(m.seg + m.mdb) / (double)m.live_stored);
	fault_rmtree(dir);
	free(dir);
	CHECK(worst <= MAX_RATIO, "disk usage reached %.2fx the live compressed bytes "
	      "(limit %.1fx)", worst, MAX_RATIO);
	printf("churn: worst ratio %.2f <= %.1f\n", worst, MAX_RATIO);
	return 0;
}
