"""The data model: skeleton, session, pose table, segment table and the project file.

No Qt, no napari: everything here can be used from a script.
"""

from napari_behaviorvlm.core.pose import Flag, PoseTable, Source, flag_reasons
from napari_behaviorvlm.core.project import Project, ProjectFileError, load_project, save_project
from napari_behaviorvlm.core.segments import Segment, SegmentTable
from napari_behaviorvlm.core.session import CameraSource, Session
from napari_behaviorvlm.core.skeleton import Skeleton, default_qd_mouse_skeleton

__all__ = [
    "CameraSource", "Flag", "PoseTable", "Project", "ProjectFileError", "Segment", "SegmentTable",
    "Session", "Skeleton", "Source", "default_qd_mouse_skeleton", "flag_reasons", "load_project",
    "save_project",
]
