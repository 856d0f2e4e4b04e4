from fastcam.cam import *
from fastcam.callback import *
from fastcam.interpret import *
from fastcam.data import *
