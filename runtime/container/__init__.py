"""Engine containers: records, OCI bundles generated from images, overlay rootfs."""
