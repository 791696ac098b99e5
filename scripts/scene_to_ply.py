"""Write a store scene as a coloured mesh PLY with open3d (a PLY 'written by another tool')."""

import sys

import numpy as np
import open3d as o3d

from hiclr.store import Store

store_dir, scene_id, out = sys.argv[1:4]
scene = Store.open(store_dir).scene(scene_id)
mesh = o3d.geometry.TriangleMesh()
mesh.vertices = o3d.utility.Vector3dVector(scene.read("coord").astype(np.float64))
mesh.vertex_colors = o3d.utility.Vector3dVector(scene.read("color").astype(np.float64) / 255.0)
if scene.has("faces"):
    mesh.triangles = o3d.utility.Vector3iVector(scene.read("faces"))
if not o3d.io.write_triangle_mesh(out, mesh, write_ascii=False):
    sys.exit(f"could not write {out}")
print(f"wrote {out} ({len(mesh.vertices):,} vertices)")
