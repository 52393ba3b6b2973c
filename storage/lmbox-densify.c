/*
 * lmbox-densify.c: keeping LMDB's per-message B-trees dense after
 * deletions.  LMDB merges a leaf page with its neighbour only once it is
 * less than a quarter full, so deleting most messages at random (an IMAP
 * user cleaning up, a POP3 client deleting what it fetched long ago) leaves
 * the "msgs", "uidls" and "blobs" trees with leaves 25-35% full: after the
 * churn test's rounds that is ~1.2 KB of lmbox.mdb per live message for
 * ~0.2 KB of records.  When a tree's leaves hold less than half the
 * entries they held right after its last rewrite, the tree is rewritten:
 * every entry copied out, the tree emptied, the entries put back in key
 * order with MDB_APPEND (which fills each leaf before starting the next),
 * all in one write transaction.  Readers keep their snapshot; the old
 * pages go to LMDB's freelist and their blocks are punched by
 * lmbox-trim.c.  A rewrite costs one pass over the tree (~100 ms per 100k
 * messages) and comes only after half the tree's entries have gone at
 * random, so its cost per deletion is small and bounded.
 */
#include <stdlib.h>
#include <string.h>

#include "lmbox-private.h"

/* Below this many leaf pages a tree is left alone. */
#define LMBOX_DENSIFY_MIN_LEAVES 16
/* Rewrite when entries per leaf fall below 2/3 of the best. */
/* Don't copy out more than this (then the tree stays as it is). */
#define LMBOX_DENSIFY_MAX_BYTES (128u * 1024 * 1024)

struct lmbox_dense_tree {
	const char *meta_key;      /* u32: entries per 16 leaves after a rewrite */
	unsigned int default_x16;  /* before the first rewrite */
	bool dupsort;
};

/* Entries per 16 leaf pages of a packed tree: msgs records are ~110-130
 * bytes (~32 a page), UIDL index entries ~34 (~115), live-blob index
 * entries 44 (~90).  Set low, so a tree of larger entries (keywords, long
 * UIDLs) is at most rewritten once before its own figure is known. */
static const struct lmbox_dense_tree lmbox_dense_trees[] = {
	{ "dense_msgs", 16 * 24, false },
	{ "dense_uidls", 16 * 80, true },
	{ "dense_blobs", 16 * 70, false },
};
#define LMBOX_DENSE_TREE_COUNT (sizeof(lmbox_dense_trees) / sizeof(lmbox_dense_trees[0]))

static MDB_dbi lmbox_dense_dbi(struct lmbox_store *store, unsigned int i)
{
	switch (i) {
	case 0: return store->env->dbi_msgs;
	case 1: return store->env->dbi_uidls;
	default: return store->env->dbi_blobs;
	}
}

/* 1 if tree i is sparse enough to be rewritten. */
static int lmbox_dense_sparse(struct lmbox_store *store, MDB_txn *txn, unsigned int i)
{
	const struct lmbox_dense_tree *t = &lmbox_dense_trees[i];
	uint32_t best;
	MDB_stat st;

	if (mdb_stat(txn, lmbox_dense_dbi(store, i), &st) != 0 ||
	    st.ms_leaf_pages < LMBOX_DENSIFY_MIN_LEAVES)
		return 0;
	if (lmbox_meta_get_u32(store, txn, t->meta_key, &best) < 0 || best == 0)
		best = t->default_x16;
	/* entries*16/leaves < best*2/3 */
	return (uint64_t)st.ms_entries * 16 * 3 < (uint64_t)best * 2 * st.ms_leaf_pages;
}

struct lmbox_densify_ctx {
	bool want[LMBOX_DENSE_TREE_COUNT];
	unsigned int rewritten;
};

struct lmbox_dense_entry {
	size_t koff, ksize, voff, vsize;
};

static int lmbox_densify_tree(struct lmbox_wctx *ctx, unsigned int i, bool *done_r)
{
	const struct lmbox_dense_tree *t = &lmbox_dense_trees[i];
	struct lmbox_store *store = ctx->store;
	MDB_dbi dbi = lmbox_dense_dbi(store, i);
	struct lmbox_dense_entry *ents = NULL;
	unsigned int count = 0, alloc = 0;
	unsigned char *buf = NULL;
	size_t used = 0, size = 0;
	MDB_cursor *cur;
	MDB_val k, v;
	MDB_stat st;
	int rc, ret = 0;

	*done_r = false;
	if ((rc = mdb_cursor_open(ctx->txn, dbi, &cur)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: densify cursor", store->mdb_path);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		size_t need = used + k.mv_size + v.mv_size;

		if (need > LMBOX_DENSIFY_MAX_BYTES) {
			/* too big to copy out: leave it */
			mdb_cursor_close(cur);
			goto out;
		}
		if (need > size) {
			size_t nsize = size == 0 ? 256 * 1024 : size;
			unsigned char *nbuf;

			while (nsize < need)
				nsize *= 2;
			if ((nbuf = realloc(buf, nsize)) == NULL) {
				mdb_cursor_close(cur);
				ret = lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
				goto out;
			}
			buf = nbuf;
			size = nsize;
		}
		if (lmbox_grow_array(&ents, &alloc, count + 1, sizeof(*ents)) < 0) {
			mdb_cursor_close(cur);
			ret = lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
			goto out;
		}
		ents[count].koff = used;
		ents[count].ksize = k.mv_size;
		memcpy(buf + used, k.mv_data, k.mv_size);
		used += k.mv_size;
		ents[count].voff = used;
		ents[count].vsize = v.mv_size;
		memcpy(buf + used, v.mv_data, v.mv_size);
		used += v.mv_size;
		count++;
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND) {
		ret = lmbox_set_mdb_error(store, rc, "%s: densify walk", store->mdb_path);
		goto out;
	}
	/* empty the tree (its pages go to the freelist), refill it packed */
	if ((rc = mdb_drop(ctx->txn, dbi, 0)) != 0) {
		ret = lmbox_set_mdb_error(store, rc, "%s: densify drop", store->mdb_path);
		goto out;
	}
	for (unsigned int j = 0; j < count; j++) {
		k.mv_data = buf + ents[j].koff;
		k.mv_size = ents[j].ksize;
		v.mv_data = buf + ents[j].voff;
		v.mv_size = ents[j].vsize;
		rc = mdb_put(ctx->txn, dbi, &k, &v, t->dupsort ? MDB_APPENDDUP : MDB_APPEND);
		if (rc != 0) {
			ret = lmbox_set_mdb_error(store, rc, "%s: densify put", store->mdb_path);
			goto out;
		}
	}
	if ((rc = mdb_stat(ctx->txn, dbi, &st)) != 0) {
		ret = lmbox_set_mdb_error(store, rc, "%s: densify stat", store->mdb_path);
		goto out;
	}
	if (st.ms_entries != count) {
		ret = lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: densify: %u entries copied, %llu written back", store->mdb_path,
			count, (unsigned long long)st.ms_entries);
		goto out;
	}
	if (st.ms_leaf_pages > 0) {
		uint64_t x16 = (uint64_t)st.ms_entries * 16 / st.ms_leaf_pages;

		ret = lmbox_meta_put_u32(store, ctx->txn, t->meta_key,
					 x16 > UINT32_MAX ? UINT32_MAX : (uint32_t)x16);
	}
	*done_r = ret == 0;
out:
	free(ents);
	free(buf);
	return ret;
}

static int lmbox_densify_fn(struct lmbox_wctx *ctx, void *context)
{
	struct lmbox_densify_ctx *d = context;
	bool done;
	int ret;

	d->rewritten = 0;
	for (unsigned int i = 0; i < LMBOX_DENSE_TREE_COUNT; i++) {
		/* decided again under the write lock: another process may
		 * have done it */
		if (!d->want[i] || lmbox_dense_sparse(ctx->store, ctx->txn, i) == 0)
			continue;
		if ((ret = lmbox_densify_tree(ctx, i, &done)) < 0)
			return ret;
		if (done)
			d->rewritten++;
	}
	return 0;
}

int lmbox_densify(struct lmbox_store *store)
{
	struct lmbox_densify_ctx d;
	bool any = false;
	MDB_txn *txn;
	int ret;

	if (store->env->rdonly || (store->opts.flags & LMBOX_OPEN_RDONLY) != 0 ||
	    getenv("LMBOX_TEST_NO_DENSIFY") != NULL)
		return 0;
	memset(&d, 0, sizeof(d));
	if ((ret = lmbox_rtxn_begin(store, &txn)) < 0)
		return ret;
	for (unsigned int i = 0; i < LMBOX_DENSE_TREE_COUNT; i++) {
		d.want[i] = lmbox_dense_sparse(store, txn, i) > 0;
		any = any || d.want[i];
	}
	mdb_txn_abort(txn);
	if (!any)
		return 0;
	if ((ret = lmbox_write(store, lmbox_densify_fn, &d)) < 0)
		return ret;
	return (int)d.rewritten;
}

void lmbox_densify_after_deletes(struct lmbox_store *store)
{
	char saved[LMBOX_ERRMSG_SIZE];

	if (store->env->compacting)
		return;
	memcpy(saved, store->errmsg, sizeof(saved));
	(void)lmbox_densify(store);
	memcpy(store->errmsg, saved, sizeof(saved));
}
