#ifndef LMBOX_PRIVATE_H
#define LMBOX_PRIVATE_H
/*
 * Internals of liblmbox shared between its files: the per-process
 * environment registry, the store handle, error helpers, the write
 * transaction runner (map growth and retry) and segment I/O.
 */
#include <stdbool.h>
#include <lmdb.h>

#include "lmbox.h"
#include "lmbox-format.h"

#define LMBOX_DEFAULT_MAP_INITIAL (8ULL * 1024 * 1024)
#define LMBOX_DEFAULT_MAP_MAX (1024ULL * 1024 * 1024)
#define LMBOX_DEFAULT_SEGMENT_MAX (64ULL * 1024 * 1024)
#define LMBOX_DEFAULT_MAX_READERS 1024
#define LMBOX_DEFAULT_COMPRESS_LEVEL 6
/* An append keeps its compressed bytes in memory up to this, then spills. */
#define LMBOX_SPILL_THRESHOLD (1024 * 1024)
/* ... and a transaction keeps at most this much in memory in all. */
#define LMBOX_TXN_MEM_MAX (16 * 1024 * 1024)
/* Raw bytes kept to store small incompressible messages raw. */
#define LMBOX_RAW_KEEP_MAX (256 * 1024)
#define LMBOX_IO_CHUNK (64 * 1024)
#define LMBOX_ERRMSG_SIZE 1024
/* Hole punching frees whole blocks of this size (lmbox-reclaim.c); the
 * auto-compaction's choice of what to move counts in them too. */
#define LMBOX_PUNCH_ALIGN 4096
/* Blocks kept allocated past the end of lmbox.mdb for deletions on a full
 * disk: 1/16 of what is used, within these bounds. */
#define LMBOX_MDB_RESERVE_MIN (256 * 1024)
#define LMBOX_MDB_RESERVE_MAX (32 * 1024 * 1024)
/* Free LMDB pages are punched out (lmbox-trim.c) when lmbox.mdb holds more
 * blocks than its live pages + the front the last trim kept + max(this,
 * 1/4 of the live pages); the next trim waits until that much more is free
 * than the last one left, or until some time passed. */
#define LMBOX_MDB_TRIM_MIN (128 * 1024)
#define LMBOX_MDB_TRIM_RETRY_SECS 30
/* The last closed environment of a process stays open ("idle") for the
 * next open of the same store (an LMTP process delivering to one user
 * again) if its map is at most this big. */
#define LMBOX_ENV_LINGER_MAP_MAX (32ULL * 1024 * 1024)

/* One LMDB environment per store per process, shared by every
 * lmbox_store_open() of that store in this process (LMDB forbids opening
 * the same file twice in one process). */
struct lmbox_env {
	struct lmbox_env *next;
	dev_t dev;
	ino_t ino;
	pid_t pid;
	MDB_env *env;
	MDB_dbi dbi_meta, dbi_values, dbi_folders, dbi_names;
	MDB_dbi dbi_msgs, dbi_uidls, dbi_segs, dbi_reclaim, dbi_blobs;
	/* "pending" (expunges not applied yet, lmbox-pending.c); a store
	 * from before it, opened read-only, has none: has_pending = false */
	MDB_dbi dbi_pending;
	bool has_pending;
	MDB_dbi dbi_dicts;            /* valid iff has_dicts */
	bool has_dicts;               /* false: a read-only open of an older store */
	unsigned int refcount;
	/* Internal walks (lmbox_check) that hold cursors or pointers into
	 * the map across calls: the map is not resized while any is on. */
	unsigned int map_pins;
	/* Bumped whenever this process remaps: cursors kept across calls
	 * (message iterators) re-seek when it changed. */
	unsigned int map_gen;
	/* reclaim records whose work was done at open: deleted by the next
	 * write transaction of this process (open never takes the write
	 * lock) */
	bool compacting;           /* no auto-compaction from inside one */
	uint64_t reserved_to;      /* lmbox.mdb blocks allocated up to here */
	uint64_t trim_excess;      /* lmbox.mdb blocks past its live pages
	                              after the last trim */
	uint64_t trim_keep;        /* free pages it left for LMDB to reuse */
	int64_t trim_time;         /* ... and when it ran */
	struct lmbox_reclaim_item *reclaim_done;
	unsigned int reclaim_done_count, reclaim_done_alloc;
	bool rdonly;
	bool nosync;               /* opened with LMBOX_FSYNC_NEVER */
	unsigned int psize;        /* LMDB page size */
	uint64_t map_size;
	/* every commit up to this txnid is durable (lmbox_env_sync) */
	uint64_t synced_txnid;
};

struct lmbox_store {
	struct lmbox_env *env;
	pid_t pid;
	unsigned int fork_gen;
	char *dir, *seg_dir, *tmp_dir, *mdb_path;
	struct lmbox_store_opts opts;
	/* the next lmbox_write() may leave its meta page unsynced ... */
	bool defer_sync;
	/* ... and one did: lmbox_store_sync() has work */
	bool sync_pending;
	/* store dictionaries (lmbox-sdict.c): immutable once written, so
	   cached for the handle's life */
	struct lmbox_sdict *sdicts;
	uint32_t sdict_current;       /* what new messages use; 0 = none known */
	bool sdict_tried;             /* this handle tried to train one */
	uint32_t sdict_file_ok;       /* this dictionary's file is known to exist */
	uint32_t sdict_unusable;      /* ... could not be written: codec 3 */
	/* the last check found the store too small to train: what it
	   lacked, and what this handle appended since (lmbox-sdict.c) */
	bool sdict_small;
	uint32_t sdict_need_msgs, sdict_added_msgs, sdict_commits;
	uint64_t sdict_need_bytes, sdict_added_bytes;
	bool has_warning;             /* lmbox_store_take_warning() */
	char warning[LMBOX_ERRMSG_SIZE];
	char errmsg[LMBOX_ERRMSG_SIZE];
};

struct lmbox_arena_chunk;

/* A reader hands out no pointer into the map (uidl and keywords are copied
 * into its arena), so the map may be resized while readers are open. */
struct lmbox_reader {
	struct lmbox_store *store;
	MDB_txn *txn;
	unsigned int txn_gen;      /* bumped by every refresh */
	bool pending;              /* the snapshot has pending expunges */
	struct lmbox_arena_chunk *arena;
	MDB_cursor *guid_cur;      /* lmbox_reader_msg_guid()'s, or NULL */
};

/* Work to do after a commit: punch or unlink dead space. */
struct lmbox_reclaim_item {
	uint32_t seg_id;
	uint8_t kind;
	uint64_t offset, len;
};

struct lmbox_wseg {
	uint32_t seg_id;
	struct lmbox_seg_rec rec;
	bool deleted;
};

/* A segment a transaction holds the append claim of: an exclusive flock on
 * an fd of its own (lmbox-segment.c, "claims").  Only a claim holder writes
 * at a segment's tail, moves the tail or seals it; the claim is released
 * (the fd closed) only after the commit that records what was written. */
struct lmbox_claim {
	uint32_t seg_id;
	int fd;
	uint64_t end;             /* where the next prepared blob goes */
	bool dirty;               /* written since the last fdatasync */
	bool full;                /* the next blob did not fit: seal at commit */
};

/* State of one attempt of a write transaction.  Everything in it is rebuilt
 * when the attempt is retried after growing the map. */
struct lmbox_wctx {
	struct lmbox_store *store;
	MDB_txn *txn;

	struct lmbox_wseg *segs;
	unsigned int seg_count, seg_alloc;
	uint32_t cur_seg;         /* segment appended to, 0 = not loaded yet */
	int cur_fd;
	bool cur_created, meta_dirty;
	uint32_t next_seg_id;
	int *sync_fds;            /* segment fds written to, to fdatasync */
	unsigned int sync_fd_count, sync_fd_alloc;

	struct lmbox_reclaim_item *reclaims;
	unsigned int reclaim_count, reclaim_alloc;

	uint32_t *folders;        /* folders changed: change_counter++ once */
	unsigned int folder_count, folder_alloc;

	/* pending expunges this transaction recorded (lmbox-pending.c) */
	unsigned int pending_added;
	uint64_t pending_last;    /* highest key put, (folder_id << 32) | uid */
};

/* A finished append waiting for commit: its stored (compressed) bytes are
 * in data or, when large, in spill_fd from offset 0. */
struct lmbox_pending {
	int64_t received_date, save_date;
	uint8_t guid[LMBOX_GUID_SIZE];
	char *uidl;               /* NULL = generate at commit */
	uint32_t pop3_order, want_uid;
	uint8_t flags, codec;
	char *keywords;           /* packed, kw_count strings */
	unsigned int kw_count;
	uint64_t phys_size, virt_size, stored_size;
	uint32_t checksum;
	unsigned char *data;
	int spill_fd;
	/* where lmbox_txn_prepare() wrote the blob (pre_seg 0 = not yet) */
	uint32_t pre_seg;
	uint64_t pre_offset;
};

enum lmbox_op_type {
	LMBOX_OP_APPEND,
	LMBOX_OP_EXPUNGE,
	LMBOX_OP_FLAGS,
	LMBOX_OP_KEYWORDS,
	LMBOX_OP_POP3_RETR,
	LMBOX_OP_COPY,
	LMBOX_OP_MOVE,
};

struct lmbox_op {
	enum lmbox_op_type type;
	uint32_t folder_id, uid, dst_folder;
	unsigned int seq;
	uint8_t modify, flags;
	char *keywords;
	unsigned int kw_count;
	int64_t when;
	struct lmbox_pending *msg;
};

struct lmbox_append;

struct lmbox_txn {
	struct lmbox_store *store;
	struct lmbox_op *ops;
	unsigned int op_count, op_alloc;
	unsigned int seq_count;
	size_t mem_bytes;              /* finished appends' bytes in memory */
	struct lmbox_append *appends;  /* unfinished appends */
	/* UID assignment per folder during a commit (lmbox-txn.c) */
	struct lmbox_uid_plan *uid_plans;
	unsigned int uid_plan_count, uid_plan_alloc;
	bool defer_sync;               /* lmbox_txn_defer_sync() */
	/* segments claimed by lmbox_txn_prepare(), held until the end */
	struct lmbox_claim *claims;
	unsigned int claim_count, claim_alloc;
	/* expunges go to "pending" (lmbox-pending.c) */
	bool pending_mode;
	/* filled by the commit */
	uint32_t *uids;
	unsigned int expunged;
};

typedef int lmbox_write_fn(struct lmbox_wctx *ctx, void *context);

/* lmbox-error.c */
int lmbox_set_error(struct lmbox_store *store, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int lmbox_set_errno(struct lmbox_store *store, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int lmbox_set_mdb_error(struct lmbox_store *store, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int lmbox_errno_code(int errnum);
int lmbox_mdb_code(int rc);
int lmbox_grow_array(void *arrp, unsigned int *alloc, unsigned int need, size_t elem);

/* lmbox-store.c */
int lmbox_store_check_usable(struct lmbox_store *store, bool write);
/* false in a child forked after the store was opened */
bool lmbox_same_process(const struct lmbox_store *store);
int lmbox_rtxn_begin(struct lmbox_store *store, MDB_txn **txn_r);
void lmbox_maybe_grow_early(struct lmbox_store *store);
void lmbox_reserve_mdb_space(struct lmbox_store *store);
/* the size of that reserve for a file using used bytes */
uint64_t lmbox_mdb_reserve_size(uint64_t used);
int lmbox_write(struct lmbox_store *store, lmbox_write_fn *fn, void *context);
/* The environment runs with MDB_NOMETASYNC: a commit syncs its data pages
 * but leaves the meta page to the next sync.  This makes every commit up to
 * the newest one durable (no-op if this process synced that one already). */
int lmbox_env_sync(struct lmbox_store *store);
/* The same without applying pending expunges first (an unsynced write). */
int lmbox_write_nopurge(struct lmbox_store *store, lmbox_write_fn *fn, void *context);
int lmbox_meta_get_u32(struct lmbox_store *store, MDB_txn *txn, const char *key,
		       uint32_t *value_r);
int lmbox_meta_put_u32(struct lmbox_store *store, MDB_txn *txn, const char *key,
		       uint32_t value);
void lmbox_random_bytes(void *buf, size_t size);
int64_t lmbox_now(void);

/* lmbox-trim.c */
/* Punch out the blocks of LMDB free pages no reader can see, if many. */
void lmbox_mdb_trim(struct lmbox_store *store);
/* Bytes of lmbox.mdb's pages that belong to a B-tree now (0 if unknown). */
uint64_t lmbox_mdb_in_use_bytes(struct lmbox_env *env);
/* Header+stored bytes of every live blob (the segment records), as of
   txn; 0 if they cannot be read (lmbox-trim.c). */
uint64_t lmbox_live_blob_bytes(struct lmbox_env *env, MDB_txn *txn);
/* Free the blocks kept past the end of lmbox.mdb; true if any were. */
bool lmbox_release_mdb_reserve(struct lmbox_store *store);

/* lmbox-compact.c */
void lmbox_auto_compact(struct lmbox_store *store, const struct lmbox_reclaim_item *items,
			unsigned int count);

/* lmbox-densify.c */
/* Rewrite the per-message B-trees that deletions left sparse; returns how
 * many were rewritten, or an error. */
int lmbox_densify(struct lmbox_store *store);
/* The same after a commit that deleted: failures are left for next time
 * and don't replace the store's last error. */
void lmbox_densify_after_deletes(struct lmbox_store *store);

/* lmbox-pending.c */
/* Expunges of at least this many messages in one commit (of a store
 * opened with LMBOX_OPEN_DEFER_RECLAIM) go to the "pending" database;
 * LMBOX_TEST_PENDING_MIN overrides it. */
#define LMBOX_PENDING_MIN_EXPUNGES 32
/* Whether a commit with this many expunges takes the pending path. */
bool lmbox_pending_wanted(struct lmbox_store *store, unsigned int expunges);
/* true if txn's snapshot has pending expunges (or it cannot tell) */
bool lmbox_pending_nonempty(struct lmbox_store *store, MDB_txn *txn);
/* 1 if (folder_id, uid) is pending in txn, 0 if not, <0 error. */
int lmbox_pending_get(struct lmbox_store *store, MDB_txn *txn, uint32_t folder_id,
		      uint32_t uid);
/* Expunge a message the cheap way: counters now, records at the purge. */
int lmbox_pending_add(struct lmbox_wctx *ctx, struct lmbox_folder_info *folder,
		      const struct lmbox_msg_meta *meta);
/* Apply every pending expunge (delete the records, kill the blobs) and
 * empty "pending", inside ctx's transaction.  Run at the start of every
 * write transaction. */
int lmbox_pending_purge(struct lmbox_wctx *ctx);
/* The same in a write transaction of its own, if anything is pending. */
int lmbox_pending_purge_now(struct lmbox_store *store);
/* Merge-join of a folder walk in key order with "pending". */
struct lmbox_pending_scan {
	MDB_cursor *cur;          /* NULL: nothing pending at or after the seek */
	uint64_t next;            /* next pending key at or after the position,
	                             UINT64_MAX = none */
};
/* Position at the first pending key >= (folder_id, uid); closes a cursor
 * the scan had.  Only in read transactions. */
int lmbox_pending_scan_seek(struct lmbox_store *store, MDB_txn *txn,
			    struct lmbox_pending_scan *scan, uint32_t folder_id, uint32_t uid);
/* 1 if (folder_id, uid) is pending; keys must come in ascending order. */
int lmbox_pending_scan_has(struct lmbox_store *store, struct lmbox_pending_scan *scan,
			   uint32_t folder_id, uint32_t uid);
void lmbox_pending_scan_close(struct lmbox_pending_scan *scan);

/* lmbox-check.c */
/* Rebuild the "blobs" index from the message records. */
int lmbox_blobs_rebuild(struct lmbox_store *store, MDB_txn *txn);

/* lmbox-folder.c */
int lmbox_folder_load(struct lmbox_store *store, MDB_txn *txn, uint32_t folder_id,
		      struct lmbox_folder_info *info_r);
int lmbox_folder_load_name(struct lmbox_store *store, MDB_txn *txn, const char *name,
			   struct lmbox_folder_info *info_r);
int lmbox_folder_save(struct lmbox_store *store, MDB_txn *txn,
		      const struct lmbox_folder_info *info);
int lmbox_wctx_touch_folder(struct lmbox_wctx *ctx, uint32_t folder_id);

/* lmbox-msg.c */
/* The errors of reading message folder_id/uid: an LMDB failure rc (not 0;
 * MDB_NOTFOUND -> LMBOX_ERR_NOTFOUND), a malformed record. */
int lmbox_msg_read_error(struct lmbox_store *store, int rc, uint32_t folder_id,
			 uint32_t uid);
int lmbox_msg_corrupt_error(struct lmbox_store *store, uint32_t folder_id, uint32_t uid);
int lmbox_msg_load(struct lmbox_store *store, MDB_txn *txn, uint32_t folder_id,
		   uint32_t uid, struct lmbox_msg_meta *meta_r);
int lmbox_msg_save(struct lmbox_store *store, MDB_txn *txn,
		   const struct lmbox_msg_meta *meta, bool new_msg);
/* Remove a message's record, UIDL entry and counters; the blob becomes
 * dead unless keep_blob (a move). */
int lmbox_msg_remove(struct lmbox_wctx *ctx, struct lmbox_folder_info *folder,
		     const struct lmbox_msg_meta *meta, bool keep_blob);
/* Only the records: UIDL entry, message record, blob (dead); no counters. */
int lmbox_msg_unlink(struct lmbox_wctx *ctx, const struct lmbox_msg_meta *meta,
		     bool keep_blob);
/* Add a message record + UIDL entry + counters to folder. */
int lmbox_msg_add(struct lmbox_wctx *ctx, struct lmbox_folder_info *folder,
		  struct lmbox_msg_meta *meta);

/* lmbox-segment.c */
void lmbox_seg_path(const struct lmbox_store *store, uint32_t seg_id, char *buf, size_t size);
/* Append a blob (header + stored bytes from mem, or from src_fd at
 * src_offset) owned by (folder_id, uid) to the current segment; returns
 * where it went. */
int lmbox_wseg_append(struct lmbox_wctx *ctx, const struct lmbox_blob_hdr *hdr,
		      const void *mem, int src_fd, uint64_t src_offset,
		      uint32_t folder_id, uint32_t uid,
		      uint32_t *seg_id_r, uint64_t *offset_r);
/* The blob changed owner (a move). */
int lmbox_wseg_blob_owner(struct lmbox_wctx *ctx, uint32_t seg_id, uint64_t offset,
			  uint64_t stored_size, uint32_t folder_id, uint32_t uid);
/* Delete the reclaim records of env->reclaim_done inside ctx's txn. */
int lmbox_reclaim_forget_done(struct lmbox_wctx *ctx);
/* The blob at (seg_id, offset) of stored_size bytes is dead. */
int lmbox_wseg_blob_dead(struct lmbox_wctx *ctx, uint32_t seg_id, uint64_t offset,
			 uint64_t stored_size);
/* Seal seg_id if it is open and its claim can be had (alone in its
 * transaction); LMBOX_ERR_BUSY if another writer holds the claim. */
int lmbox_wseg_seal(struct lmbox_wctx *ctx, uint32_t seg_id);
/* A blob lmbox_txn_prepare() wrote at (seg_id, offset) under a claim of
 * this transaction: record it if offset is still the segment's tail.
 * Returns 1 if it is not (then the caller writes the blob again). */
int lmbox_wseg_adopt(struct lmbox_wctx *ctx, const struct lmbox_blob_hdr *hdr,
		     uint32_t seg_id, uint64_t offset, uint32_t folder_id, uint32_t uid);
/* Seal the claimed segments marked full (end of a transaction's apply). */
int lmbox_wseg_seal_claims(struct lmbox_wctx *ctx, const struct lmbox_claim *claims,
			   unsigned int count);
/* Outside the write lock: claim an open segment (not one of claims[])
 * with room for len bytes at its tail.  Returns 1 with *claim_r filled, 0
 * if none is free (the commit will create one), <0 on error.  A claimed
 * segment without room is still returned, with full set. */
int lmbox_seg_claim(struct lmbox_store *store, const struct lmbox_claim *claims,
		    unsigned int count, uint64_t len, struct lmbox_claim *claim_r);
/* Write a blob (header + stored bytes from mem or src_fd) at offset. */
int lmbox_seg_write_blob(struct lmbox_store *store, int fd, const char *what,
			 const struct lmbox_blob_hdr *hdr, const void *mem,
			 int src_fd, uint64_t src_offset, uint64_t offset);
int lmbox_wseg_flush(struct lmbox_wctx *ctx);
void lmbox_wctx_free(struct lmbox_wctx *ctx);
void lmbox_reclaim_run(struct lmbox_store *store,
		       const struct lmbox_reclaim_item *items, unsigned int count);
int lmbox_reclaim_pending(struct lmbox_store *store);
int lmbox_seg_open_read(struct lmbox_store *store, uint32_t seg_id, int *fd_r);

/* lmbox-txn.c */
int lmbox_txn_add_op(struct lmbox_txn *txn, const struct lmbox_op *op);
/* Validate and pack a NULL-terminated keyword list. */
int lmbox_keywords_pack(struct lmbox_store *store, const char *const *keywords,
			char **packed_r, unsigned int *count_r);
void lmbox_pending_free(struct lmbox_pending *msg);
/* lmbox-append.c */
void lmbox_append_orphan_all(struct lmbox_txn *txn);

/* lmbox-segment.c */
/* Read exactly size bytes at offset; short file = LMBOX_ERR_CORRUPT. */
int lmbox_pread_full(struct lmbox_store *store, int fd, void *buf, size_t size,
		     uint64_t offset, const char *what);
int lmbox_pwrite_full(struct lmbox_store *store, int fd, const void *buf, size_t size,
		      uint64_t offset, const char *what);

/* lmbox-sdict.c: per-store dictionaries (codec 4).  A store trains one
   from the text of its first LMBOX_SDICT_TRAIN_MSGS messages. */
#define LMBOX_SDICT_TRAIN_MSGS 100
/* and only once its live blobs hold this much (tests: LMBOX_TEST_SDICT_STORED) */
#define LMBOX_SDICT_TRAIN_STORED (64ULL * 1024 * 1024)
#define LMBOX_SDICT_TRAIN_BYTES (16 * 1024 * 1024)  /* read at most this */
/* The dictionary named id (a zlib DICTID): LMBOX_ERR_CORRUPT if there is
   none or it is damaged.  The bytes live as long as the handle. */
int lmbox_sdict_get(struct lmbox_store *store, uint32_t id,
		    const unsigned char **dict_r, size_t *len_r);
/* The id of the dictionary new messages use, 0 if none (yet, or ever:
   meta "dict" = 0 says training found too little text). */
int lmbox_sdict_current(struct lmbox_store *store, uint32_t *id_r);
/* A store found too small is checked again only after this handle
   appended what it lacked, or after this many commits that added
   messages (other processes append too). */
#define LMBOX_SDICT_RECHECK_COMMITS 64
/* After a commit that added msgs messages (bytes of blobs, headers
   included): trains and stores the dictionary if the store has none and
   enough messages.  Failures are not the commit's: they are ignored and
   the handle does not try again. */
void lmbox_sdict_maybe_train(struct lmbox_store *store, unsigned int msgs,
			     uint64_t bytes);
void lmbox_sdict_free_all(struct lmbox_store *store);
/* DIR/dict/XXXXXXXX.dict, the third copy of a dictionary: read and
   validated (*buf_r to free; LMBOX_ERR_NOTFOUND, LMBOX_ERR_CORRUPT), or
   written (temp file, fsync, rename, directory fsync). */
#define LMBOX_DICT_DIR "dict"
int lmbox_sdict_file_read(struct lmbox_store *store, uint32_t id, unsigned char **buf_r,
			  const unsigned char **dict_r, size_t *len_r);
int lmbox_sdict_file_write(struct lmbox_store *store, uint32_t id,
			   const unsigned char *dict, size_t len);
mode_t lmbox_dir_mode(mode_t file_mode);
/* a problem worth a log line that failed nothing (lmbox_store_take_warning) */
void lmbox_set_warning(struct lmbox_store *store, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* lmbox-xform.c: the transformed stream of LMBOX_CODEC_DEFLATE_B64 (3):
   records of a 6-byte header (type, line length / 4, u32 LE length) and a
   payload; base64 runs are stored decoded. */
#define LMBOX_XF_HDR 6
#define LMBOX_XF_LITERAL 1
#define LMBOX_XF_B64_LF 2
#define LMBOX_XF_B64_CRLF 3
#define LMBOX_XF_CHUNK (64 * 1024)  /* the writer's largest payload */
#define LMBOX_XF_MIN_L 16           /* the writer's shortest base64 line */
#define LMBOX_XF_MAX_L 1020         /* longest line: 4 * 255 */
#define LMBOX_XF_MIN_LINES 2        /* shorter runs stay literal */

/* Receives the transformed stream; < 0 (an lmbox error) stops the writer. */
typedef int lmbox_xf_emit_fn(void *ctx, const void *data, size_t size);
struct lmbox_xf_enc;
struct lmbox_xf_enc *lmbox_xf_enc_new(lmbox_xf_emit_fn *emit, void *ctx);
int lmbox_xf_enc_write(struct lmbox_xf_enc *enc, const void *data, size_t size);
/* Emits what is left.  With allow_plain, a message in which no base64 run
   was found and none of which was emitted yet goes out as it is, with no
   record header, and *plain_r is set: the caller stores it as codec 2. */
int lmbox_xf_enc_finish(struct lmbox_xf_enc *enc, bool allow_plain, bool *plain_r);
void lmbox_xf_enc_free(struct lmbox_xf_enc **enc);

struct lmbox_xf_dec {
	uint64_t out_left;            /* bytes of the message not yet claimed */
	uint64_t rec_left;            /* payload bytes left in this record */
	const char *err;              /* why the stream is corrupt */
	unsigned int hdr_len, eol, lb, line_len;
	size_t pend_pos, pend_len;
	unsigned char hdr[LMBOX_XF_HDR];
	unsigned char line[LMBOX_XF_MAX_L / 4 * 3];  /* a line's bytes, gathered */
	unsigned char pend[LMBOX_XF_MAX_L + 2];      /* an encoded line not yet out */
};
/* A decoder of the transformed stream of a message of out_size bytes. */
void lmbox_xf_dec_init(struct lmbox_xf_dec *dec, uint64_t out_size);
/* Consumes input from *in (advanced) and writes up to out_size bytes;
   returns the number written, 0 only when the input is used up, or -1 if
   the stream is corrupt (dec->err says how). */
ssize_t lmbox_xf_dec_run(struct lmbox_xf_dec *dec, const unsigned char **in,
			 size_t *in_len, unsigned char *out, size_t out_size);
/* At the end of the input: 0 if the stream ended cleanly and produced the
   whole message, else -1 (dec->err). */
int lmbox_xf_dec_end(struct lmbox_xf_dec *dec);

/* lmbox-append.c: zs as deflateInit(level) and deflateSetDictionary(dict)
   leave it (no dictionary when dict_len is 0), by deflateCopy() of a stream
   primed once per process.  0 ok, -1 out of memory. */
struct z_stream_s;
int lmbox_deflate_start(struct z_stream_s *zs, int level,
			const unsigned char *dict, size_t dict_len);

#endif
