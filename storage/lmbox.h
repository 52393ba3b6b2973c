#ifndef LMBOX_H
#define LMBOX_H
/*
 * liblmbox: a per-user mail store.  Message metadata lives in one LMDB
 * environment per store directory; message bodies are zlib-compressed blobs
 * appended to segment files beside it.  Knows nothing of Dovecot.
 *
 * Store directory layout (DIR is e.g. ~/lmbox):
 *   DIR/lmbox.mdb        LMDB data file (MDB_NOSUBDIR), metadata only
 *   DIR/lmbox.mdb-lock   LMDB lock file
 *   DIR/seg/NNNNNNNN     body segment files
 *   DIR/tmp/             spill files of appends in progress
 * Anything else under DIR (e.g. Dovecot's index files) is not the store's.
 *
 * Conventions:
 *   - Every function that can fail returns int: 0 (LMBOX_OK) or a positive
 *     result on success, a negative enum lmbox_error on failure.
 *   - After a failure, lmbox_store_errmsg() describes it in one line fit
 *     for a log (what, which file/message, why).  It is per store and per
 *     thread of use; the store is not meant to be shared between threads.
 *   - Pointers inside a struct lmbox_msg_meta filled by a reader stay valid
 *     until that reader ends or is refreshed (they point into memory of
 *     the reader, never into the LMDB map).
 *   - Nothing aborts on bad on-disk data: corruption is LMBOX_ERR_CORRUPT.
 *
 * Concurrency: any number of processes may open the same store at once;
 * writers serialize on LMDB's write lock for their commits (bodies are
 * written and synced before it, each writer in a segment it has claimed:
 * lmbox_txn_prepare()), readers never block and never are blocked.  A
 * process opens one store once (the library keeps one environment per
 * store per process and refcounts lmbox_store_open(); the last one closed
 * stays open, idle, for the next open of the same store); a store handle
 * must not be used across fork(): the child must open its own.
 *
 * Durability: a commit is durable when lmbox_txn_commit() returns (unless
 * lmbox_txn_defer_sync(): then after lmbox_store_sync()).  The environment
 * runs with MDB_NOMETASYNC and the commit syncs its meta page after it has
 * released the write lock, so between the two another process can see a
 * commit that a power loss would still undo (never one that was reported
 * durable).
 *
 * Caveats:
 *   - Local file systems only: LMDB's locking does not work on NFS.  Opening
 *     a store on NFS fails with LMBOX_ERR_INVALID.
 *   - Streams of a message body verify the checksum when they reach the end;
 *     a mismatch is reported then (LMBOX_ERR_CHECKSUM), after earlier bytes
 *     were already handed out.  Consumers must treat the read as failed.
 *   - A body opened from metadata of an older snapshot whose message has
 *     since been expunged (its space may be punched already) fails with
 *     LMBOX_ERR_NOTFOUND; one moved by lmbox_compact() is found where it
 *     is now (mid-stream: LMBOX_ERR_BUSY, retry).
 *   - Iterators, bodies and readers must be ended before the store that
 *     made them is closed; message iterators before their reader.
 *   - The LMDB map starts small and grows (doubling, up to map_max) also
 *     while readers are open; a commit that still does not fit fails with
 *     LMBOX_ERR_MAPFULL and changes nothing.  A map grown by another
 *     process is adopted at the next transaction.
 *   - LMBOX_FSYNC_NEVER: a power loss may lose recent commits and, after an
 *     expunge, leave records whose bodies were already punched (CORRUPT).
 *   - Between a big expunge committed as pending (LMBOX_OPEN_DEFER_RECLAIM)
 *     and its purge the store is format 2: a library from before pending
 *     expunges refuses to open it (LMBOX_ERR_VERSION) rather than show
 *     those messages again.  Any write of this library purges.
 */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Newest on-disk format this library reads and writes.  A store whose
 * format is newer is refused with LMBOX_ERR_VERSION.  A store is format 1
 * except while it holds expunges not yet applied to its records (the
 * "pending" database, docs/design.md): then it is format 2, so that a
 * library that knows nothing of them refuses the store instead of showing
 * those messages again. */
#define LMBOX_FORMAT_VERSION 2
#define LMBOX_FORMAT_BASE 1
#define LMBOX_FORMAT_PENDING 2

enum lmbox_error {
	LMBOX_OK = 0,
	LMBOX_ERR_IO = -1,        /* a system call failed; see errmsg (errno text) */
	LMBOX_ERR_NOTFOUND = -2,  /* no such folder / message / UIDL */
	LMBOX_ERR_EXISTS = -3,    /* folder name already taken */
	LMBOX_ERR_CORRUPT = -4,   /* on-disk data is inconsistent or undecodable */
	LMBOX_ERR_CHECKSUM = -5,  /* body bytes do not match their checksum */
	LMBOX_ERR_VERSION = -6,   /* store written by a newer format version */
	LMBOX_ERR_NOSPACE = -7,   /* disk full or quota (ENOSPC/EDQUOT): temporary */
	LMBOX_ERR_MAPFULL = -8,   /* LMDB map reached its configured maximum */
	LMBOX_ERR_NOMEM = -9,
	LMBOX_ERR_INVALID = -10,  /* bad argument or unusable configuration */
	LMBOX_ERR_PERM = -11,     /* permission denied (EACCES/EPERM) */
	LMBOX_ERR_TOOBIG = -12,   /* message larger than LMBOX_MAX_MESSAGE_SIZE */
	LMBOX_ERR_BUSY = -13,     /* out of LMDB reader slots, or a lock timed out */
	LMBOX_ERR_FORK = -14,     /* handle used in another process than it was opened in */
	LMBOX_ERR_READONLY = -15, /* write on a store opened LMBOX_OPEN_RDONLY */
};

/* A short constant description of an error code ("store is corrupt"). */
const char *lmbox_strerror(int err);
/* 1 for errors a retry later may cure (NOSPACE, BUSY, IO, MAPFULL), else 0. */
int lmbox_error_is_temporary(int err);

/* Hard limit on one message's physical size. */
#define LMBOX_MAX_MESSAGE_SIZE (1024ULL * 1024 * 1024)
/* Longest UIDL (RFC 1939: 1-70 characters 0x21-0x7E). */
#define LMBOX_MAX_UIDL_LEN 70
/* Longest folder name in bytes. */
#define LMBOX_MAX_FOLDER_NAME 1024

/* ---------------------------------------------------------------- store */

struct lmbox_store;

enum lmbox_open_flags {
	LMBOX_OPEN_CREATE = 0x01, /* create DIR and an empty store if missing */
	LMBOX_OPEN_RDONLY = 0x02, /* no writes; LMBOX_ERR_READONLY on attempts */
	/* A commit that kills blobs only records their ranges (as always, in
	 * the same LMDB transaction); the punching, unlinking and
	 * auto-compaction wait for lmbox_store_reclaim() or
	 * lmbox_store_close(), so they are not part of the commit's latency.
	 * A commit of 32 expunges or more only records them as pending
	 * (readers see them gone at once); their records are deleted by
	 * lmbox_store_reclaim()/close or by the next write of any process. */
	LMBOX_OPEN_DEFER_RECLAIM = 0x04,
};

enum lmbox_fsync_mode {
	LMBOX_FSYNC_ALWAYS = 0,   /* fdatasync bodies, then LMDB commit syncs (default) */
	LMBOX_FSYNC_OPTIMIZED,    /* same as ALWAYS for the store: a commit is the
	                             point Dovecot's "optimized" syncs at */
	LMBOX_FSYNC_NEVER,        /* no fsync at all (MDB_NOSYNC): fast, unsafe on power loss */
};

struct lmbox_store_opts {
	unsigned int flags;           /* enum lmbox_open_flags */
	int compress_level;           /* zlib level 0-9; 0 stores raw; default 6 */
	enum lmbox_fsync_mode fsync;
	uint64_t map_initial;         /* initial LMDB map size; 0 = default (8 MiB) */
	uint64_t map_max;             /* map never grows past this; 0 = default (1 GiB) */
	uint64_t segment_max;         /* segment rotation size; 0 = default (64 MiB) */
	unsigned int max_readers;     /* LMDB reader slots; 0 = default (1024) */
	/* Directory for spill files; NULL = DIR/tmp. */
	const char *tmp_dir;
	/* File mode for created files (dirs get +x where r); 0 = 0600. */
	mode_t file_mode;
};

/* Fill opts with the defaults. */
void lmbox_store_opts_init(struct lmbox_store_opts *opts);

/* Open the store in dir.  opts may be NULL (defaults, no create).  Clears
 * stale LMDB readers, checks the format version, and redoes any space
 * reclaim a crash interrupted.  On failure *store_r is NULL and, if
 * errmsg_r is not NULL, *errmsg_r points to a static-per-thread message
 * (valid until the next failed open). */
int lmbox_store_open(const char *dir, const struct lmbox_store_opts *opts,
		     struct lmbox_store **store_r, const char **errmsg_r);
/* Close and set *store to NULL.  NULL-safe. */
void lmbox_store_close(struct lmbox_store **store);
/* Apply expunges that commits left pending (docs/design.md, "Pending
 * expunges"), then give back the space of blobs that commits killed and
 * left recorded (LMBOX_OPEN_DEFER_RECLAIM, or a crash): punch, unlink dead
 * segments, auto-compact sparse ones.  Also done by lmbox_store_close() of a store
 * opened with LMBOX_OPEN_DEFER_RECLAIM.  Best effort: what fails stays
 * recorded and is redone later (by this call or any open); returns 0, or
 * an error if the records could not be read. */
int lmbox_store_reclaim(struct lmbox_store *store);
/* One line about the last failure on this store. */
const char *lmbox_store_errmsg(const struct lmbox_store *store);
/* A problem that failed no call but belongs in the log (e.g. the store
 * dictionary could not be trained or its file written), once: NULL when
 * there is none; valid until the next call into the store. */
const char *lmbox_store_take_warning(struct lmbox_store *store);
const char *lmbox_store_path(const struct lmbox_store *store);
/* Make every commit so far durable (one fdatasync of lmbox.mdb, none if
 * nothing committed since the last one or with LMBOX_FSYNC_NEVER): what a
 * commit under lmbox_txn_defer_sync() left undone. */
int lmbox_store_sync(struct lmbox_store *store);

/* Store-wide named 64-bit counters/values (e.g. "pop3.last_login").  Names
 * up to 64 bytes.  get returns LMBOX_ERR_NOTFOUND when unset. */
int lmbox_store_get_u64(struct lmbox_store *store, const char *name, uint64_t *value_r);
int lmbox_store_set_u64(struct lmbox_store *store, const char *name, uint64_t value);

struct lmbox_store_stat {
	uint32_t format_version;
	uint32_t folder_count;
	uint64_t message_count;       /* all folders */
	uint64_t phys_bytes;          /* sum of physical sizes */
	uint64_t stored_bytes;        /* sum of compressed sizes of live messages */
	uint32_t segment_count;
	uint64_t segment_bytes;       /* apparent sizes of segment files */
	uint64_t segment_alloc_bytes; /* allocated bytes (st_blocks*512) */
	uint64_t reclaim_pending;     /* ranges recorded but not punched yet */
	uint64_t map_size;            /* current LMDB map size */
	uint64_t map_used;            /* bytes of the map in use */
	uint64_t pending_expunges;    /* expunges committed but not purged yet
					 ("pending"); their blobs still count
					 in stored_bytes until the purge */
};
int lmbox_store_stat(struct lmbox_store *store, struct lmbox_store_stat *stat_r);

/* Debug/test counter: number of message bodies opened through this
 * process since start (all stores).  Lets tests prove a path reads no body. */
uint64_t lmbox_body_open_count(void);

/* zlib's crc32() and adler32() (same arguments and values, any length),
 * vectorized where the CPU allows: what body reads verify with. */
uint32_t lmbox_crc32(uint32_t crc, const void *buf, size_t len);
uint32_t lmbox_adler32(uint32_t adler, const void *buf, size_t len);

/* -------------------------------------------------------------- folders */

#define LMBOX_GUID_SIZE 16

struct lmbox_folder_info {
	uint32_t id;                  /* stable internal id, never reused */
	uint32_t uidvalidity;
	uint32_t next_uid;
	uint32_t count;               /* messages */
	uint64_t vsize_total;         /* sum of virtual (CRLF) sizes: POP3 STAT */
	uint64_t psize_total;         /* sum of physical sizes */
	uint64_t change_counter;      /* bumped by every commit that changes the folder */
	uint64_t highest_modseq_hint; /* reserved, 0 */
	uint8_t guid[LMBOX_GUID_SIZE];/* mailbox GUID (random at create) */
	char name[LMBOX_MAX_FOLDER_NAME + 1];
};

/* Create folder name.  uidvalidity 0 = pick one (time-based, unique within
 * the store); guid NULL = random.  LMBOX_ERR_EXISTS if taken. */
int lmbox_folder_create(struct lmbox_store *store, const char *name,
			uint32_t uidvalidity, const uint8_t *guid,
			uint32_t *id_r);
/* O(1) lookups, each its own short read transaction. */
int lmbox_folder_lookup(struct lmbox_store *store, const char *name,
			struct lmbox_folder_info *info_r);
int lmbox_folder_get(struct lmbox_store *store, uint32_t folder_id,
		     struct lmbox_folder_info *info_r);
/* Rename one folder (not its "children": names are opaque here). */
int lmbox_folder_rename(struct lmbox_store *store, const char *old_name,
			const char *new_name);
/* Delete a folder and all its messages in one transaction. */
int lmbox_folder_delete(struct lmbox_store *store, const char *name);
/* Change UIDVALIDITY (if nonzero), raise next_uid to at least min_next_uid
 * (if nonzero), set guid (if not NULL).  For dsync/mailbox_update. */
int lmbox_folder_update(struct lmbox_store *store, uint32_t folder_id,
			uint32_t uidvalidity, uint32_t min_next_uid,
			const uint8_t *guid);

/* Iterate all folders in name order. */
struct lmbox_folder_iter;
int lmbox_folder_iter_init(struct lmbox_store *store, struct lmbox_folder_iter **iter_r);
/* 1 = info_r filled, 0 = end, <0 error. */
int lmbox_folder_iter_next(struct lmbox_folder_iter *iter, struct lmbox_folder_info *info_r);
void lmbox_folder_iter_deinit(struct lmbox_folder_iter **iter);

/* ------------------------------------------------------------- messages */

/* System flags, the same bits as Dovecot's enum mail_flags. */
enum lmbox_flags {
	LMBOX_FLAG_ANSWERED = 0x01,
	LMBOX_FLAG_FLAGGED  = 0x02,
	LMBOX_FLAG_DELETED  = 0x04,
	LMBOX_FLAG_SEEN     = 0x08,
	LMBOX_FLAG_DRAFT    = 0x10,
	LMBOX_FLAGS_MASK    = 0x1f,
};

enum lmbox_codec {
	LMBOX_CODEC_RAW = 0,
	LMBOX_CODEC_DEFLATE = 1, /* zlib stream (RFC 1950) */
	LMBOX_CODEC_DEFLATE_DICT1 = 2, /* zlib stream with preset dictionary 1 (lmbox-dict.c) */
	LMBOX_CODEC_DEFLATE_B64 = 3, /* codec 2 of a stream with base64 runs decoded (lmbox-xform.c) */
	LMBOX_CODEC_DEFLATE_B64_SDICT = 4, /* codec 3 with the store's own dictionary (lmbox-sdict.c) */
};

struct lmbox_msg_meta {
	uint32_t folder_id;
	uint32_t uid;
	uint32_t pop3_order;      /* 0 = none (UID order) */
	uint8_t flags;            /* enum lmbox_flags */
	uint8_t codec;            /* enum lmbox_codec */
	int64_t received_date;    /* unix time */
	int64_t save_date;        /* unix time */
	int64_t pop3_first_retr;  /* unix time of first POP3 RETR, 0 = never */
	uint64_t phys_size;       /* bytes as saved */
	uint64_t virt_size;       /* bytes with every bare LF counted as CRLF */
	uint64_t stored_size;     /* compressed bytes in the segment */
	uint32_t checksum;        /* CRC-32 (zlib) of the physical bytes */
	uint8_t guid[LMBOX_GUID_SIZE];
	uint32_t seg_id;          /* where the body blob lives */
	uint64_t seg_offset;
	const char *uidl;         /* NUL-terminated, never empty */
	/* Keywords: kw_count NUL-terminated strings back to back. */
	const char *keywords;
	unsigned int kw_count;
};

/* Return the next keyword after *pos (start with *pos = NULL); NULL at end. */
const char *lmbox_meta_next_keyword(const struct lmbox_msg_meta *meta, const char *pos);

/* A reader is one LMDB read transaction: a consistent snapshot.  Keep it
 * short (a sync, a login's scan): a long reader pins old pages. */
struct lmbox_reader;
int lmbox_reader_begin(struct lmbox_store *store, struct lmbox_reader **reader_r);
void lmbox_reader_end(struct lmbox_reader **reader);
/* Re-snapshot an existing reader to the latest commit (cheap).  Open
 * message iterators continue after the last UID they returned. */
int lmbox_reader_refresh(struct lmbox_reader *reader);

int lmbox_reader_folder(struct lmbox_reader *reader, uint32_t folder_id,
			struct lmbox_folder_info *info_r);
int lmbox_reader_folder_by_name(struct lmbox_reader *reader, const char *name,
				struct lmbox_folder_info *info_r);
/* Metadata of one message.  LMBOX_ERR_NOTFOUND if expunged. */
int lmbox_reader_msg(struct lmbox_reader *reader, uint32_t folder_id,
		     uint32_t uid, struct lmbox_msg_meta *meta_r);
/* The GUID of one message record of the snapshot, for a run of lookups in
 * ascending UID order (an expunge's GUIDs): the reader keeps a cursor on
 * the last record's leaf page, so a UID on the same page costs no descent
 * from the root.  Unlike lmbox_reader_msg() a record whose expunge is
 * pending still answers (its GUID is what the expunge names) and nothing
 * is copied.  LMBOX_ERR_NOTFOUND if the snapshot has no such record. */
int lmbox_reader_msg_guid(struct lmbox_reader *reader, uint32_t folder_id,
			  uint32_t uid, uint8_t guid_r[LMBOX_GUID_SIZE]);
/* UID of the message with this UIDL in folder.  If several (copies) share
 * it, the lowest UID. */
int lmbox_reader_uidl(struct lmbox_reader *reader, uint32_t folder_id,
		      const char *uidl, uint32_t *uid_r);

/* Iterate a folder's messages in UID order, from the first UID >= from_uid. */
struct lmbox_msg_iter;
int lmbox_msg_iter_init(struct lmbox_reader *reader, uint32_t folder_id,
			uint32_t from_uid, struct lmbox_msg_iter **iter_r);
/* 1 = meta_r filled, 0 = end, <0 error.  A message whose record cannot be
 * decoded is skipped (its siblings stay reachable) and counted: see
 * lmbox_msg_iter_corrupt(); lmbox_store_errmsg() names the last one. */
int lmbox_msg_iter_next(struct lmbox_msg_iter *iter, struct lmbox_msg_meta *meta_r);
/* Number of malformed message records the iteration skipped so far.
 * Callers report them (e.g. to the log); `lmbox check` lists them. */
unsigned int lmbox_msg_iter_corrupt(const struct lmbox_msg_iter *iter);
/* From now on meta_r's uidl and keywords point into the snapshot's map
 * instead of the reader's arena: valid only until the next call into the
 * store (another process growing the map makes the next reader remap it).
 * Saves the copy for walks that copy at once what they keep. */
void lmbox_msg_iter_set_borrow(struct lmbox_msg_iter *iter);
void lmbox_msg_iter_deinit(struct lmbox_msg_iter **iter);

/* ----------------------------------------------------------------- bodies */

/* A body stream: the message's physical bytes, decompressed incrementally.
 * Needs no reader (meta was copied in). */
struct lmbox_body;
int lmbox_body_open(struct lmbox_store *store, const struct lmbox_msg_meta *meta,
		    struct lmbox_body **body_r);
/* Returns bytes read (>0), 0 at the end (checksum verified), <0 error. */
ssize_t lmbox_body_read(struct lmbox_body *body, void *buf, size_t size);
void lmbox_body_close(struct lmbox_body **body);
/* Convenience: the whole body into a malloc()ed buffer (*data_r, free()). */
int lmbox_body_read_all(struct lmbox_store *store, const struct lmbox_msg_meta *meta,
			unsigned char **data_r, size_t *size_r);

/* ----------------------------------------------------------- transactions */

/* A write transaction collects appends, expunges, flag changes, copies and
 * moves in memory; lmbox_txn_commit() applies them all in one LMDB write
 * transaction, or none.  Body bytes are compressed while they are written
 * (to memory, or a spill file for large messages); no lock is held until
 * commit. */
struct lmbox_txn;
int lmbox_txn_begin(struct lmbox_store *store, struct lmbox_txn **txn_r);
/* Abort: nothing is applied; *txn = NULL.  NULL-safe. */
void lmbox_txn_abort(struct lmbox_txn **txn);

struct lmbox_append_opts {
	int64_t received_date;       /* 0 = now */
	int64_t save_date;           /* 0 = now */
	const uint8_t *guid;         /* NULL = random */
	const char *uidl;            /* NULL = "%08x%08x" of UID, UIDVALIDITY: what
	                                Dovecot's default pop3_uidl_format gives */
	uint32_t pop3_order;         /* 0 = none */
	uint8_t flags;
	const char *const *keywords; /* NULL-terminated, or NULL */
	/* 0 = next UID.  Nonzero: wanted UID (dsync); honoured if it is at or
	 * above the folder's next UID as of the start of the commit and not
	 * taken; every other message of the commit is numbered after the
	 * highest honoured UID (Dovecot's own rule, so replicas agree). */
	uint32_t uid;
};
void lmbox_append_opts_init(struct lmbox_append_opts *opts);

struct lmbox_append;
/* Start a message for folder_id.  Options are copied. */
int lmbox_append_begin(struct lmbox_txn *txn, uint32_t folder_id,
		       const struct lmbox_append_opts *opts,
		       struct lmbox_append **append_r);
int lmbox_append_write(struct lmbox_append *append, const void *data, size_t size);
/* The POP3 size (CRLF octets) of what was written so far: the message's
 * virt_size once the last write is in. */
uint64_t lmbox_append_virt_size(const struct lmbox_append *append);
/* Finish the message: it becomes part of txn.  Returns its sequence within
 * the transaction (0, 1, ...) used to find its UID after commit.  The
 * append handle is freed either way. */
int lmbox_append_finish(struct lmbox_append **append);
/* Drop the message.  NULL-safe. */
void lmbox_append_abort(struct lmbox_append **append);

/* Expunge a message.  Already gone at commit: silently skipped. */
int lmbox_txn_expunge(struct lmbox_txn *txn, uint32_t folder_id, uint32_t uid);

enum lmbox_modify {
	LMBOX_MODIFY_REPLACE = 0,
	LMBOX_MODIFY_ADD,
	LMBOX_MODIFY_REMOVE,
};
/* Change system flags. */
int lmbox_txn_update_flags(struct lmbox_txn *txn, uint32_t folder_id, uint32_t uid,
			   enum lmbox_modify modify, uint8_t flags);
/* Change keywords (NULL-terminated list). */
int lmbox_txn_update_keywords(struct lmbox_txn *txn, uint32_t folder_id, uint32_t uid,
			      enum lmbox_modify modify, const char *const *keywords);
/* Record the first POP3 retrieval time if none is recorded yet. */
int lmbox_txn_set_pop3_first_retr(struct lmbox_txn *txn, uint32_t folder_id,
				  uint32_t uid, int64_t when);
/* Copy a message into dst_folder (new UID; body bytes copied; UIDL, GUID,
 * dates, flags kept).  Returns its sequence like lmbox_append_finish(). */
int lmbox_txn_copy(struct lmbox_txn *txn, uint32_t src_folder, uint32_t uid,
		   uint32_t dst_folder);
/* Move: as copy + expunge of the source, without copying body bytes. */
int lmbox_txn_move(struct lmbox_txn *txn, uint32_t src_folder, uint32_t uid,
		   uint32_t dst_folder);

struct lmbox_commit_result {
	/* For each appended/copied/moved message, in sequence order: its new
	 * UID (0 if its source vanished before commit). */
	uint32_t *uids;           /* malloc()ed; free with lmbox_commit_result_free */
	unsigned int uid_count;
	unsigned int expunged;    /* messages actually expunged */
};
/* Write the bodies of the transaction's finished appends to segment files
 * and make them durable (fdatasync), without the store's write lock, so
 * that concurrent writers do this part in parallel.  Each writer appends to
 * a segment it holds the claim (flock) of until its commit or abort; when
 * every open segment is claimed by another writer, the remaining bodies are
 * left for lmbox_txn_commit(), which writes them under the write lock into
 * a new segment.  Nothing becomes visible: until the commit the bytes lie
 * beyond their segment's committed tail.  lmbox_txn_commit() does this
 * itself for what was not prepared; call it first to keep the writing and
 * syncing out of a lock of the caller's (the plugin: Dovecot's index sync
 * lock).  Appends finished after it are prepared by the commit. */
int lmbox_txn_prepare(struct lmbox_txn *txn);
/* Let this transaction's commit return before its last sync: LMDB's meta
 * page (the commit record) is written but not yet synced when
 * lmbox_txn_commit() returns, and the caller must call lmbox_store_sync()
 * before it reports the change as durable.  The commit releases the write
 * lock before that sync, so other writers need not wait for it (the plugin
 * syncs after releasing Dovecot's index lock too).  A commit that kills
 * bodies is synced before it returns all the same. */
void lmbox_txn_defer_sync(struct lmbox_txn *txn);
/* Apply everything atomically and free the txn (*txn = NULL, also on
 * failure).  result may be NULL. */
int lmbox_txn_commit(struct lmbox_txn **txn, struct lmbox_commit_result *result);
void lmbox_commit_result_free(struct lmbox_commit_result *result);

/* ------------------------------------------------------------ maintenance */

/* Report callback for check: one line per problem found. */
typedef void lmbox_report_fn(void *context, const char *line);

enum lmbox_check_flags {
	LMBOX_CHECK_BODIES = 0x01, /* also read every body and verify checksums */
	LMBOX_CHECK_REPAIR = 0x02, /* fix what can be fixed without losing mail:
	                              counters, UIDL index, reclaim list */
};
/* Returns the number of problems found (0 = clean), <0 on failure. */
int lmbox_check(struct lmbox_store *store, unsigned int flags,
		lmbox_report_fn *report, void *context);
/* Rewrite live blobs out of sparse segments to return partial blocks. */
int lmbox_compact(struct lmbox_store *store, uint64_t *bytes_freed_r);

#ifdef __cplusplus
}
#endif
#endif
