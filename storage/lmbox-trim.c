/*
 * lmbox-trim.c: giving the disk blocks of LMDB's free pages back.  LMDB
 * never shrinks its file: after a mass deletion lmbox.mdb keeps the blocks
 * of its high-water mark.  Pages on LMDB's freelist that no reader can see
 * hold nothing anyone reads, so their blocks are punched out
 * (fallocate(PUNCH_HOLE|KEEP_SIZE)); the file keeps its size, and when
 * LMDB reuses such a page it pwrite()s the whole page and the file system
 * allocates a block again.
 *
 * Safety (LMDB 0.9, no MDB_WRITEMAP, see docs/design.md "Free LMDB pages"):
 * the freelist (FREE_DBI) maps a txnid K to the pages txn K freed.
 * mdb_page_alloc() hands out, and overwrites, any page of a record with
 * K < oldest = min(txnid of every reader slot, last committed txnid); we
 * punch exactly the pages LMDB itself may overwrite at that moment, and do
 * it while holding the write lock (inside a write transaction that
 * changes nothing and is aborted), so no other writer can reuse a page
 * between our reading of the freelist and the punch.  Punching zeroes a
 * page; LMDB reusing it would overwrite it.
 *
 * A full disk: a deletion's copy-on-write may land on a punched page,
 * which needs a new block.  lmbox_write() then releases the blocks kept
 * past the end of lmbox.mdb (lmbox_release_mdb_reserve) and retries once.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <linux/falloc.h>

#include "lmbox-private.h"

/* LMDB's reserved ids: FREE_DBI = 0, MAIN_DBI = 1 */
#define LMBOX_FREE_DBI 0
#define LMBOX_MAIN_DBI 1
/* at most this many free page numbers are read per trim */
#define LMBOX_TRIM_MAX_PAGES (4u << 20)

struct lmbox_oldest {
	uint64_t oldest;
	bool unparsed;
};

/* One line of mdb_reader_list(): "%10d %zx %zu\n" for a reader in a
 * transaction, "%10d %zx -\n" for an idle slot, or a header. */
static int lmbox_reader_line(const char *msg, void *context)
{
	struct lmbox_oldest *o = context;
	unsigned long long txnid;
	char tid[32], txn[32], extra;
	char *end;
	int pid, n;

	if (strstr(msg, "no reader locks") != NULL) {
		o->unparsed = true; /* MDB_NOLOCK: readers are unknown */
		return 0;
	}
	n = sscanf(msg, "%d %31s %31s %c", &pid, tid, txn, &extra);
	if (n <= 0)
		return 0; /* "    pid     thread     txnid", "(no active readers)" */
	if (n != 3) {
		o->unparsed = true;
		return 0;
	}
	if (strcmp(txn, "-") == 0)
		return 0;
	errno = 0;
	txnid = strtoull(txn, &end, 10);
	if (errno != 0 || *end != '\0' || end == txn) {
		o->unparsed = true;
		return 0;
	}
	if (txnid < o->oldest)
		o->oldest = txnid;
	return 0;
}

static int lmbox_pgno_cmp(const void *a, const void *b)
{
	uint64_t pa = *(const uint64_t *)a, pb = *(const uint64_t *)b;

	return pa < pb ? -1 : pa > pb ? 1 : 0;
}

/* Pages that belong to some B-tree (or are a meta page), as of txn. */
static int lmbox_mdb_pages_in_use(struct lmbox_env *env, MDB_txn *txn, uint64_t *pages_r);

uint64_t lmbox_mdb_in_use_bytes(struct lmbox_env *env)
{
	MDB_txn *txn;
	MDB_stat mst;
	uint64_t pages;
	int ret;

	if (mdb_env_stat(env->env, &mst) != 0 ||
	    mdb_txn_begin(env->env, NULL, MDB_RDONLY, &txn) != 0)
		return 0;
	ret = lmbox_mdb_pages_in_use(env, txn, &pages);
	mdb_txn_abort(txn);
	return ret < 0 ? 0 : pages * mst.ms_psize;
}

/* Pages that belong to some B-tree (or are a meta page), as of txn. */
static int lmbox_mdb_pages_in_use(struct lmbox_env *env, MDB_txn *txn, uint64_t *pages_r)
{
	MDB_dbi dbis[] = {
		LMBOX_FREE_DBI, LMBOX_MAIN_DBI, env->dbi_meta, env->dbi_values,
		env->dbi_folders, env->dbi_names, env->dbi_msgs, env->dbi_uidls,
		env->dbi_segs, env->dbi_reclaim, env->dbi_blobs, env->dbi_pending,
	};
	/* a store without "pending" (opened read-only) has one dbi less */
	size_t ndbis = sizeof(dbis) / sizeof(dbis[0]) - (env->has_pending ? 0 : 1);
	uint64_t pages = 2; /* the two meta pages */
	MDB_stat st;

	for (size_t i = 0; i < ndbis; i++) {
		if (mdb_stat(txn, dbis[i], &st) != 0)
			return -1;
		pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
	}
	if (env->has_dicts) {
		if (mdb_stat(txn, env->dbi_dicts, &st) != 0)
			return -1;
		pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
	}
	*pages_r = pages;
	return 0;
}

/* Punch the free pages of freelist records older than every reader.
 * Called with the write lock held (wtxn).  Returns the bytes punched
 * (over ranges that held data), or -1. */
/* Append count page numbers of an IDL value to *pgnos. */
static int lmbox_idl_append(const MDB_val *v, size_t count, uint64_t last_pgno,
			    uint64_t **pgnos, uint64_t *n, uint64_t *alloc)
{
	if (*n + count > *alloc) {
		uint64_t new_alloc = *alloc == 0 ? 1024 : *alloc;
		uint64_t *p;

		while (new_alloc < *n + count)
			new_alloc *= 2;
		if ((p = realloc(*pgnos, new_alloc * sizeof(*p))) == NULL)
			return -1;
		*pgnos = p;
		*alloc = new_alloc;
	}
	for (size_t i = 1; i <= count; i++) {
		size_t pgno;

		memcpy(&pgno, (const char *)v->mv_data + i * sizeof(size_t), sizeof(pgno));
		/* pages 0 and 1 are the metas; nothing past the end */
		if (pgno < 2 || pgno > last_pgno)
			return -1;
		(*pgnos)[(*n)++] = pgno;
	}
	return 0;
}

/* Punch the runs of consecutive pages in sorted pgnos[0..n). */
static void lmbox_punch_pages(int fd, unsigned int psize, const uint64_t *pgnos, uint64_t n,
			      int64_t *bytes)
{
	for (uint64_t i = 0; i < n; ) {
		uint64_t j = i + 1;
		off_t start, end, pos;

		while (j < n && pgnos[j] <= pgnos[j - 1] + 1)
			j++;
		start = (off_t)(pgnos[i] * psize);
		end = (off_t)((pgnos[j - 1] + 1) * psize);
		i = j;
		/* skip what is a hole already: pages punched before */
		pos = lseek(fd, start, SEEK_DATA);
		if (pos < 0) {
			if (errno == ENXIO)
				break; /* only holes from here on */
			pos = start;
		}
		if (pos >= end)
			continue;
		start = pos - (pos - start) % (off_t)psize;
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      start, end - start) < 0)
			break; /* not supported here, or an error: just stop */
		*bytes += end - start;
	}
}

/* A run of lmbox.mdb known to hold blocks: [start, end). */
struct lmbox_data_run {
	off_t start, end;
};

/* Does page pgno hold blocks (is it not a hole)?  *run caches the data
 * run last found, so that ascending pages cost a SEEK_DATA and a
 * SEEK_HOLE per run.  When unsure, true (the page is kept). */
static bool lmbox_page_allocated(int fd, unsigned int psize, uint64_t pgno,
				 struct lmbox_data_run *run)
{
	off_t pos = (off_t)(pgno * psize), data, hole;

	if (pos >= run->start && pos < run->end)
		return true;
	data = lseek(fd, pos, SEEK_DATA);
	if (data < 0)
		return errno != ENXIO;
	if (data >= pos + (off_t)psize) {
		/* a hole up to data: remember nothing */
		return false;
	}
	hole = lseek(fd, data, SEEK_HOLE);
	if (hole < 0)
		return true;
	run->start = data;
	run->end = hole;
	return hole > pos;
}

/* Header+stored bytes of every live blob (the segment records), as of
 * txn; 0 if they cannot be read. */
uint64_t lmbox_live_blob_bytes(struct lmbox_env *env, MDB_txn *txn)
{
	struct lmbox_seg_rec rec;
	MDB_cursor *cur;
	MDB_val k, v;
	uint64_t total = 0;
	int rc;

	if (mdb_cursor_open(txn, env->dbi_segs, &cur) != 0)
		return 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (lmbox_seg_rec_decode(v.mv_data, v.mv_size, &rec) == 0)
			total += rec.live_bytes;
	}
	mdb_cursor_close(cur);
	return total;
}

/* Free pages at the front of the freelist that a trim leaves unpunched:
 * half the full-disk reserve, or, when that is more, what one commit can
 * rewrite (at most every page in use: a POP3 QUIT deleting 10% of a
 * mailbox at random dirties nearly every leaf of msgs, uidls and blobs),
 * up to 1/32 of the live message bytes.  A commit that lands on punched
 * pages makes the file system allocate blocks again, which its fdatasync
 * then waits for; so a front sized for a rewrite counts only pages that
 * hold blocks (*blocks_r). */
static uint64_t lmbox_mdb_trim_front(uint64_t in_use_bytes, uint64_t live_bytes,
				     unsigned int psize, bool *blocks_r)
{
	uint64_t front = lmbox_mdb_reserve_size(in_use_bytes) / 2;
	uint64_t rewrite = in_use_bytes < live_bytes / 32 ? in_use_bytes : live_bytes / 32;

	*blocks_r = rewrite > front;
	return (*blocks_r ? rewrite : front) / psize;
}

/* Punch the free pages of freelist records older than every reader,
 * except the ones LMDB reuses first.  Called with the write lock held
 * (inside a write transaction).  Returns the bytes punched. */
static int64_t lmbox_mdb_trim_locked(struct lmbox_store *store, int fd, unsigned int psize,
				     uint64_t in_use_bytes, uint64_t *keep_r)
{
	struct lmbox_env *env = store->env;
	struct lmbox_oldest o = { UINT64_MAX, false };
	MDB_txn *rtxn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	MDB_envinfo info;
	uint64_t *pgnos = NULL, last_pgno, n = 0, alloc = 0, keep = 0, kept = 0;
	struct lmbox_data_run run = { 0, 0 };
	bool front_blocks;
	int64_t punched = 0;
	int rc, dead;

	/* slots of dead readers would only make us more careful */
	(void)mdb_reader_check(env->env, &dead);
	/* the freelist can only be read through a read-only transaction
	 * (mdb_cursor_open(FREE_DBI) is EINVAL in a write one); it sees the
	 * last committed state, which the write transaction we hold has
	 * not changed.  It is itself a reader of that txnid. */
	if (mdb_txn_begin(env->env, NULL, MDB_RDONLY, &rtxn) != 0)
		return -1;
	if (mdb_env_info(env->env, &info) != 0)
		goto out;
	last_pgno = info.me_last_pgno;
	/* every reader, ours included (so oldest <= last committed txnid,
	 * as in LMDB's mdb_find_oldest) */
	if (mdb_reader_list(env->env, lmbox_reader_line, &o) < 0 || o.unparsed ||
	    o.oldest > mdb_txn_id(rtxn))
		goto out;
	if (mdb_cursor_open(rtxn, LMBOX_FREE_DBI, &cur) != 0)
		goto out;
	/* LMDB (0.9, no MDB_LIFORECLAIM) takes free pages from the records
	 * in ascending txnid order: keep the first ones unpunched
	 * (lmbox_mdb_trim_front: at least half the full-disk reserve, up to
	 * what one commit rewrites).  The next commits write there without
	 * needing new blocks, which is what lets a deletion commit on a full
	 * disk; punching them would also only cost time. */
	keep = lmbox_mdb_trim_front(in_use_bytes, lmbox_live_blob_bytes(env, rtxn), psize,
				    &front_blocks);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		size_t txnid, count;

		if (k.mv_size != sizeof(size_t) || v.mv_size < sizeof(size_t) ||
		    v.mv_size % sizeof(size_t) != 0)
			goto out; /* not the freelist we know: leave it alone */
		memcpy(&txnid, k.mv_data, sizeof(txnid));
		/* LMDB reuses a record only below the oldest reader */
		if (txnid >= o.oldest)
			break;
		memcpy(&count, v.mv_data, sizeof(count));
		if (count > v.mv_size / sizeof(size_t) - 1)
			goto out;
		if (n + count > LMBOX_TRIM_MAX_PAGES)
			break;
		if (kept < keep) {
			/* the front, which LMDB reuses first: a whole record
			 * is merged, then its lowest page numbers go first.
			 * In a front sized for a rewrite only pages that hold
			 * blocks count: a hole there (punched before) saves
			 * the next commit nothing, so the front reaches on
			 * to later records until it holds keep pages of
			 * blocks. */
			uint64_t first = n, i;

			if (lmbox_idl_append(&v, count, last_pgno, &pgnos, &n, &alloc) < 0)
				goto out;
			qsort(pgnos + first, count, sizeof(*pgnos), lmbox_pgno_cmp);
			for (i = first; i < n && kept < keep; i++) {
				if (!front_blocks ||
				    lmbox_page_allocated(fd, psize, pgnos[i], &run))
					kept++;
			}
			memmove(pgnos + first, pgnos + i, (n - i) * sizeof(*pgnos));
			n -= i - first;
			continue;
		}
		if (lmbox_idl_append(&v, count, last_pgno, &pgnos, &n, &alloc) < 0)
			goto out;
	}
	if ((rc != 0 && rc != MDB_NOTFOUND) || n == 0)
		goto out;
	qsort(pgnos, n, sizeof(*pgnos), lmbox_pgno_cmp);
	lmbox_punch_pages(fd, psize, pgnos, n, &punched);
	*keep_r = kept * psize;
out:
	if (cur != NULL)
		mdb_cursor_close(cur);
	mdb_txn_abort(rtxn);
	free(pgnos);
	return punched;
}

/* After a commit: if lmbox.mdb holds clearly more blocks than its live
 * pages, punch out the free ones.  The check costs an fstat and a read
 * transaction; the trim itself takes the write lock briefly. */
void lmbox_mdb_trim(struct lmbox_store *store)
{
	struct lmbox_env *env = store->env;
	MDB_txn *txn;
	MDB_envinfo info;
	MDB_stat mst;
	struct stat st;
	uint64_t in_use, alloc, eof_reserve, threshold, file_end;
	int64_t now = lmbox_now();
	int fd;

	if (env->rdonly || getenv("LMBOX_TEST_NO_MDB_TRIM") != NULL)
		return;
	if (mdb_env_get_fd(env->env, &fd) != 0 || fstat(fd, &st) < 0 ||
	    mdb_env_stat(env->env, &mst) != 0 || mdb_env_info(env->env, &info) != 0)
		return;
	if (mdb_txn_begin(env->env, NULL, MDB_RDONLY, &txn) != 0)
		return;
	if (lmbox_mdb_pages_in_use(env, txn, &in_use) < 0)
		in_use = info.me_last_pgno + 1;
	mdb_txn_abort(txn);
	alloc = (uint64_t)st.st_blocks * 512;
	file_end = (uint64_t)st.st_size;
	/* blocks kept past the end for deletions on a full disk */
	eof_reserve = env->reserved_to > file_end ? env->reserved_to - file_end : 0;
	alloc = alloc > eof_reserve ? alloc - eof_reserve : 0;
	in_use *= mst.ms_psize;
	threshold = in_use / 4 > LMBOX_MDB_TRIM_MIN ? in_use / 4 : LMBOX_MDB_TRIM_MIN;
	/* free pages with blocks beyond the front the last trim kept */
	if (alloc <= in_use + env->trim_keep + threshold)
		return;
	/* after a trim, what it left (the pages LMDB reuses first, pages
	 * readers still see) is the baseline: the next one waits until that
	 * much more is free, or a while passed */
	if (alloc - in_use <= env->trim_excess + threshold &&
	    now - env->trim_time < LMBOX_MDB_TRIM_RETRY_SECS)
		return;
	if (mdb_txn_begin(env->env, NULL, 0, &txn) != 0)
		return;
	(void)lmbox_mdb_trim_locked(store, fd, mst.ms_psize, in_use, &env->trim_keep);
	mdb_txn_abort(txn);
	env->trim_time = now;
	env->trim_excess = alloc - in_use;
	if (fstat(fd, &st) == 0) {
		alloc = (uint64_t)st.st_blocks * 512;
		alloc = alloc > eof_reserve ? alloc - eof_reserve : 0;
		env->trim_excess = alloc > in_use ? alloc - in_use : 0;
	}
}

/* A deletion's commit failed for lack of space: its copy-on-write pages
 * landed on punched free pages.  Give the blocks kept past the end of
 * lmbox.mdb back to the file system (ftruncate to the same size drops
 * them on ext4 and tmpfs), with the write lock held so that no writer
 * changes the size meanwhile.  Returns true if blocks were freed. */
bool lmbox_release_mdb_reserve(struct lmbox_store *store)
{
	struct lmbox_env *env = store->env;
	struct stat before, after;
	MDB_txn *txn;
	bool freed = false;
	int fd;

	if (mdb_env_get_fd(env->env, &fd) != 0)
		return false;
	if (mdb_txn_begin(env->env, NULL, 0, &txn) != 0)
		return false;
	if (fstat(fd, &before) == 0 && ftruncate(fd, before.st_size) == 0 &&
	    fstat(fd, &after) == 0 && after.st_size == before.st_size)
		freed = after.st_blocks < before.st_blocks;
	mdb_txn_abort(txn);
	env->reserved_to = 0;
	return freed;
}
