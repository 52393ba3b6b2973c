#ifndef LMBOX_FORMAT_H
#define LMBOX_FORMAT_H
/*
 * On-disk format of liblmbox, version 1: LMDB keys and records, segment file
 * headers and blob headers.  Everything is encoded byte by byte: keys
 * big-endian (so LMDB's memcmp order is numeric order), record fields
 * little-endian.  Each decoder takes (buf, len) and nothing else, checks
 * every length and value and returns LMBOX_ERR_CORRUPT on anything
 * malformed: they are the fuzzing surface (tests/fuzz).  docs/design.md
 * describes each layout.
 */
#include <stdbool.h>

#include "lmbox.h"

/* Names of the LMDB sub-databases. */
#define LMBOX_DB_META     "meta"     /* string -> u32/u64: store-wide state */
#define LMBOX_DB_VALUES   "values"   /* string -> u64: lmbox_store_set_u64() */
#define LMBOX_DB_FOLDERS  "folders"  /* folder_id -> folder record */
#define LMBOX_DB_NAMES    "names"    /* name prefix -> folder_id (dupsort) */
#define LMBOX_DB_MSGS     "msgs"     /* (folder_id, uid) -> message record */
#define LMBOX_DB_UIDLS    "uidls"    /* (folder_id, uidl) -> uid (dupsort) */
#define LMBOX_DB_SEGS     "segs"     /* seg_id -> segment record */
#define LMBOX_DB_RECLAIM  "reclaim"  /* (seg_id, offset) -> reclaim record */
#define LMBOX_DB_BLOBS    "blobs"    /* (seg_id, offset) -> blob record: live blobs */
#define LMBOX_DB_PENDING  "pending"  /* (folder_id, uid) -> pending record: expunged,
                                        records not deleted yet (lmbox-pending.c) */
#define LMBOX_DB_DICTS    "dicts"    /* dict id (u32 BE) -> store dictionary record */

/* Keys of LMBOX_DB_META. */
#define LMBOX_META_FORMAT         "format"          /* u32 format version */
#define LMBOX_META_NEXT_FOLDER_ID "next_folder_id"  /* u32 */
#define LMBOX_META_NEXT_SEG_ID    "next_seg_id"     /* u32 */
#define LMBOX_META_CUR_SEG        "cur_seg"         /* u32, 0 = none yet */
#define LMBOX_META_LAST_UIDVALIDITY "last_uidvalidity" /* u32 */
#define LMBOX_META_DICT           "dict"            /* u32: the store dictionary
                                                       new messages use (codec 4) */

/* Folder names longer than this share a names-DB key prefix; the full name
 * is compared from the folder record (LMDB keys are limited to 511 bytes). */
#define LMBOX_NAME_KEY_MAX 480
#define LMBOX_MAX_VALUE_NAME 64
#define LMBOX_MAX_KEYWORD_LEN 255
#define LMBOX_MAX_KEYWORDS 1024

#define LMBOX_FOLDER_REC_VERSION 1
#define LMBOX_FOLDER_REC_FIXED 74
#define LMBOX_MSG_REC_VERSION 1
#define LMBOX_MSG_REC_FIXED 92
/* where a message record keeps its GUID (LMBOX_GUID_SIZE bytes) */
#define LMBOX_MSG_REC_GUID_OFFSET 72
#define LMBOX_SEG_REC_VERSION 1
#define LMBOX_SEG_REC_SIZE 24
#define LMBOX_RECLAIM_REC_VERSION 1
#define LMBOX_RECLAIM_REC_SIZE 16
#define LMBOX_BLOB_REC_VERSION 1
#define LMBOX_BLOB_REC_SIZE 24
#define LMBOX_PENDING_REC_VERSION 1
#define LMBOX_PENDING_REC_SIZE 4

#define LMBOX_SEG_MAGIC "LMBOXSEG"
#define LMBOX_SEG_VERSION 1
#define LMBOX_SEG_HDR_SIZE 64
#define LMBOX_BLOB_MAGIC "LMBB"
#define LMBOX_BLOB_VERSION 1
#define LMBOX_BLOB_HDR_SIZE 32

/* Body codecs (enum lmbox_codec): the highest one this library reads; a
   record or blob header naming a larger one is LMBOX_ERR_CORRUPT. */
#define LMBOX_CODEC_MAX LMBOX_CODEC_DEFLATE_B64_SDICT

/* lmbox-dict.c: preset deflate dictionary of LMBOX_CODEC_DEFLATE_DICT1 and
   LMBOX_CODEC_DEFLATE_B64.
   Never changed once released; its Adler-32 is the stream's DICTID. */
extern const unsigned char *const lmbox_dict1;
extern const size_t lmbox_dict1_size;
#define LMBOX_DICT1_SIZE 12441
#define LMBOX_DICT1_ADLER32 0x9ba8a6ddU

/* Test hook: when nonzero, appends use this codec instead of the default
   (LMBOX_CODEC_DEFLATE to write stores as older versions did). */
extern int lmbox_append_force_codec;

/* Segment record flags. */
#define LMBOX_SEG_SEALED 0x01  /* rotated away from: never appended to again */

enum lmbox_reclaim_kind {
	LMBOX_RECLAIM_PUNCH = 1,   /* punch a hole over [offset, offset+len) */
	LMBOX_RECLAIM_UNLINK = 2,  /* the whole segment is dead: unlink it */
};

struct lmbox_seg_rec {
	uint8_t flags;
	uint32_t live_count;   /* live blobs */
	uint64_t tail;         /* committed end: the next blob goes here */
	uint64_t live_bytes;   /* header+stored bytes of live blobs */
};

struct lmbox_reclaim_rec {
	uint8_t kind;          /* enum lmbox_reclaim_kind */
	uint64_t len;
};

/* A live blob: who owns it and how long it is (header + stored bytes). */
struct lmbox_blob_rec {
	uint32_t folder_id, uid;
	uint64_t len;
};

struct lmbox_blob_hdr {
	uint8_t codec;
	uint64_t phys_size;
	uint64_t stored_size;
	uint32_t checksum;     /* CRC-32 of the physical bytes */
};

struct lmbox_seg_hdr {
	uint32_t version;
	uint32_t seg_id;
	int64_t created;
};

/* Little/big-endian helpers. */
static inline void lmbox_put_le16(unsigned char *p, uint16_t v)
{ p[0] = v; p[1] = v >> 8; }
static inline void lmbox_put_le32(unsigned char *p, uint32_t v)
{ p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }
static inline void lmbox_put_le64(unsigned char *p, uint64_t v)
{ lmbox_put_le32(p, (uint32_t)v); lmbox_put_le32(p + 4, (uint32_t)(v >> 32)); }
static inline uint16_t lmbox_get_le16(const unsigned char *p)
{ return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t lmbox_get_le32(const unsigned char *p)
{ return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
static inline uint64_t lmbox_get_le64(const unsigned char *p)
{ return (uint64_t)lmbox_get_le32(p) | ((uint64_t)lmbox_get_le32(p + 4) << 32); }
static inline void lmbox_put_be32(unsigned char *p, uint32_t v)
{ p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static inline void lmbox_put_be64(unsigned char *p, uint64_t v)
{ lmbox_put_be32(p, (uint32_t)(v >> 32)); lmbox_put_be32(p + 4, (uint32_t)v); }
static inline uint32_t lmbox_get_be32(const unsigned char *p)
{ return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }
static inline uint64_t lmbox_get_be64(const unsigned char *p)
{ return ((uint64_t)lmbox_get_be32(p) << 32) | lmbox_get_be32(p + 4); }

/* Keys: fixed big-endian layouts. */
void lmbox_msg_key_encode(unsigned char key[8], uint32_t folder_id, uint32_t uid);
int lmbox_msg_key_decode(const void *buf, size_t len, uint32_t *folder_id_r, uint32_t *uid_r);
int lmbox_u32_key_decode(const void *buf, size_t len, uint32_t *id_r);
/* (seg_id, offset) keys of "reclaim" and "blobs". */
void lmbox_reclaim_key_encode(unsigned char key[12], uint32_t seg_id, uint64_t offset);
int lmbox_reclaim_key_decode(const void *buf, size_t len, uint32_t *seg_id_r, uint64_t *offset_r);
/* (folder_id, uidl) key; returns its length.  key must hold 4+70 bytes. */
size_t lmbox_uidl_key_encode(unsigned char *key, uint32_t folder_id, const char *uidl);

/* Plain values: u32 / u64 little-endian, exact length. */
int lmbox_u32_decode(const void *buf, size_t len, uint32_t *value_r);
int lmbox_u64_decode(const void *buf, size_t len, uint64_t *value_r);

/* 1 if s (len bytes) is a valid UIDL: 1-70 chars 0x21-0x7E. */
int lmbox_uidl_valid(const char *s, size_t len);

/* Folder record.  The encoder needs LMBOX_FOLDER_REC_FIXED + strlen(name). */
size_t lmbox_folder_encoded_size(const struct lmbox_folder_info *info);
void lmbox_folder_encode(const struct lmbox_folder_info *info, unsigned char *buf);
int lmbox_folder_decode(const void *buf, size_t len, struct lmbox_folder_info *info_r);

/* Message record.  folder_id and uid are not in it (they are the key); the
 * decoder leaves them 0 and points uidl/keywords into buf. */
size_t lmbox_msg_encoded_size(const struct lmbox_msg_meta *meta);
void lmbox_msg_encode(const struct lmbox_msg_meta *meta, unsigned char *buf);
int lmbox_msg_decode(const void *buf, size_t len, struct lmbox_msg_meta *meta_r);
/* Only the GUID of a message record: 0, or LMBOX_ERR_CORRUPT when the
 * record is too short or of another version (the rest is not checked). */
int lmbox_msg_decode_guid(const void *buf, size_t len, uint8_t guid_r[LMBOX_GUID_SIZE]);
/* Byte length of meta's packed keywords (kw_count NUL-terminated strings). */
size_t lmbox_keywords_size(const char *keywords, unsigned int kw_count);

void lmbox_seg_rec_encode(const struct lmbox_seg_rec *rec, unsigned char buf[LMBOX_SEG_REC_SIZE]);
int lmbox_seg_rec_decode(const void *buf, size_t len, struct lmbox_seg_rec *rec_r);
void lmbox_reclaim_rec_encode(const struct lmbox_reclaim_rec *rec, unsigned char buf[LMBOX_RECLAIM_REC_SIZE]);
int lmbox_reclaim_rec_decode(const void *buf, size_t len, struct lmbox_reclaim_rec *rec_r);

void lmbox_blob_rec_encode(const struct lmbox_blob_rec *rec, unsigned char buf[LMBOX_BLOB_REC_SIZE]);
int lmbox_blob_rec_decode(const void *buf, size_t len, struct lmbox_blob_rec *rec_r);

/* Pending-expunge record: a version byte and zeros (the key says it all). */
void lmbox_pending_rec_encode(unsigned char buf[LMBOX_PENDING_REC_SIZE]);
int lmbox_pending_rec_decode(const void *buf, size_t len);

void lmbox_blob_hdr_encode(const struct lmbox_blob_hdr *hdr, unsigned char buf[LMBOX_BLOB_HDR_SIZE]);
int lmbox_blob_hdr_decode(const void *buf, size_t len, struct lmbox_blob_hdr *hdr_r);

/* Store dictionary record (LMBOX_DB_DICTS, key = its id, the Adler-32 of
   its bytes, u32 BE): version 1, 3 reserved bytes, u32 LE length n
   (1..LMBOX_SDICT_MAX), u32 LE CRC-32 of each of the two copies, then the
   bytes twice.  A damaged dictionary would make every message using it
   unreadable: the second copy is read when the first fails its checks. */
#define LMBOX_DICT_REC_VERSION 1
#define LMBOX_DICT_REC_FIXED 16
#define LMBOX_SDICT_MAX 32768
size_t lmbox_dict_rec_size(size_t dict_len);
void lmbox_dict_rec_encode(const void *dict, size_t dict_len, unsigned char *buf);
/* A good copy of the dictionary (its Adler-32 must be id) in buf, or
   LMBOX_ERR_CORRUPT; *damaged_r tells whether a copy failed. */
int lmbox_dict_rec_decode(const void *buf, size_t len, uint32_t id,
			  const unsigned char **dict_r, size_t *dict_len_r, bool *damaged_r);
/* Store dictionary file (DIR/dict/XXXXXXXX.dict, XXXXXXXX = the id in
   upper-case hex), a third copy outside lmbox.mdb: "LMBXDICT", u32 LE
   version 1, u32 LE length n (1..LMBOX_SDICT_MAX), u32 LE id, u32 LE CRC-32
   of the bytes, then the n bytes; the file is exactly LMBOX_DICT_FILE_HDR + n bytes long. */
#define LMBOX_DICT_FILE_MAGIC "LMBXDICT"
#define LMBOX_DICT_FILE_VERSION 1
#define LMBOX_DICT_FILE_HDR 24
size_t lmbox_dict_file_size(size_t dict_len);
void lmbox_dict_file_encode(const void *dict, size_t dict_len, uint32_t id, unsigned char *buf);
/* The dictionary in a whole file's bytes (its Adler-32 must be id), or
   LMBOX_ERR_CORRUPT. */
int lmbox_dict_file_decode(const void *buf, size_t len, uint32_t id,
			   const unsigned char **dict_r, size_t *dict_len_r);
void lmbox_seg_hdr_encode(const struct lmbox_seg_hdr *hdr, unsigned char buf[LMBOX_SEG_HDR_SIZE]);
int lmbox_seg_hdr_decode(const void *buf, size_t len, struct lmbox_seg_hdr *hdr_r);

#endif
