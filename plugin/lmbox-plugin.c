/*
 * lmbox-plugin.c: registers the "lmbox" storage class when Dovecot loads
 * lib20_lmbox_plugin.so (mail_plugins = $mail_plugins lmbox).
 */
#include "lib.h"
#include "module-dir.h"
#include "lmbox-storage.h"

const char *lmbox_plugin_version = DOVECOT_ABI_VERSION;

void lmbox_plugin_init(struct module *module);
void lmbox_plugin_deinit(void);

void lmbox_plugin_init(struct module *module ATTR_UNUSED)
{
	mail_storage_class_register(&lmbox_storage);
}

void lmbox_plugin_deinit(void)
{
	mail_storage_class_unregister(&lmbox_storage);
}
